"""Integration fixtures: a Docker engine whose kernel has PPP (the VM on this machine)."""
import pytest

from lab import engine, images, vm


@pytest.fixture(scope="session")
def lab_engine():
    """The selected engine with the node image loaded. A VM started here is stopped at the
    end; one that was already running (a user's lab) is left alone."""
    was_running = vm.status()["state"] == "running"
    eng = engine.select()
    image = images.ensure_node_image(eng.client)
    yield eng, image
    if eng.name == "vm" and not was_running:
        vm.down()
