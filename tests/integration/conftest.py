"""Integration tests use the pptp_lab pytest plugin (lab/pytest_plugin.py): the `lab_engine`,
`lab`, `sessions` and `host` fixtures come from it.

Under `pytest -n 2 --dist loadscope` (what `make test` runs) the two workers share one VM and
each takes whole modules (a module's `lab` fixture is module-scoped). The modules whose labs
use the reference subnets (198.51.100.0/24 and friends: the shipped default, nat-clients,
router-to-router and server-behind-nat topologies) would only wait for each other, so they
form one scope, run by one worker one after another; every other module has subnets of its
own and runs beside them. (xdist's own `loadgroup` does not group under pytest 9 here.)
The modules that boot a VM of their own (vm:8, vm:9, the other kernels' VMs) form one scope
too, so they take turns: three guests under software emulation on two cores would slow
every lab past its timeouts."""
from pathlib import Path

import pytest

REFERENCE = {
    "test_lab_default", "test_spec_s1_s11", "test_s16_firewall", "test_s17_router",
    "test_s18_server_nat", "test_s19_s20_nat_editor", "test_pptp_lab_test", "test_installed_package",
}


# With them, the modules on the other kernels' VMs (issue #11): one guest of theirs at a time.
OWN_VM = {"test_vm_snapshot", "test_crash_safety", "test_other_kernels", "test_other_kernels_side_by_side"}


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ReferenceTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            stem = Path(module).stem
            return "reference-subnets" if stem in REFERENCE else "own-vm" if stem in OWN_VM else module

    return ReferenceTogether(config, log)
