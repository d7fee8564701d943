"""The foundation: errors, names, paths, host helpers, built artefacts, Debian suites.

Imports nothing else from lab (layer 1 of tests/unit/test_architecture.py)."""
