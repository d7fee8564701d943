"""Running labs as tests: one test run, the kernel matrix and labs in parallel.

May import every package above it: lab.core, lab.pptp, lab.model, lab.engines, lab.up,
lab.diagnosis and lab.reports."""
