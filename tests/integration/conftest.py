"""Integration tests use the pptp_lab pytest plugin (lab/pytest_plugin.py): the `lab_engine`,
`lab`, `sessions` and `host` fixtures come from it."""
