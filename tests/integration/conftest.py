"""Integration tests use the pptp_lab pytest plugin (lab/pytest_plugin.py): the `lab_engine`,
`lab`, `sessions` and `host` fixtures come from it.

Under `pytest -n 2 --dist loadgroup` (what `make test` runs) the two workers share one VM.
The modules whose labs use the reference subnets (198.51.100.0/24 and friends: the shipped
default, nat-clients, router-to-router and server-behind-nat topologies) would only wait
for each other, so they form one group, run by one worker one after another; every other
module has subnets of its own and goes to the second group. A module stays whole on its
worker either way (its `lab` fixture is module-scoped)."""
import pytest

REFERENCE = {
    "test_lab_default", "test_spec_s1_s11", "test_s16_firewall", "test_s17_router",
    "test_s18_server_nat", "test_s19_s20_nat_editor", "test_pptp_lab_test", "test_installed_package",
}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.xdist_group("reference" if module in REFERENCE else "own-subnets"))
