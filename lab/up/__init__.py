"""Bringing a lab up and changing it while it runs: lifecycle, configuration, capture,
apply, faults, live views and node commands.

May import lab.core, lab.pptp, lab.model and lab.engines."""
