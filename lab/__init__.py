"""pptp-lab: a containerised PPTP VPN lab orchestrator and integration testbed."""
