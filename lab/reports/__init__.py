"""What a run leaves for people to read: reports, graphs and packet paths, the matrix
report and its cell facts, conformance rows, captures annotated with the analyser's findings
and the run's files.

May import lab.core, lab.pptp, lab.model, lab.engines, lab.up and lab.diagnosis."""
