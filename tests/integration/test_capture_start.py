"""Capture start fails loudly (issue #9): when tcpdump is not listening on a segment within
the wait, `capture.start` raises naming the segment (and `up` removes what it made), instead
of returning as if every segment were captured."""
import pytest

from lab.up import capture
from lab.core.errors import LabError

LAB = "t-capture"


def test_a_segment_that_is_not_captured_is_an_error_naming_it(lab_engine, monkeypatch):
    eng, image = lab_engine
    eng.remove_lab(LAB)
    eng.create_network(LAB, "seg", "10.88.0.0/24")
    real = eng.bridge
    monkeypatch.setattr(eng, "bridge", lambda net: "nosuchbr0" if net.name.endswith("-seg") else real(net))
    monkeypatch.setattr(capture, "WAIT", 5.0)
    try:
        with pytest.raises(LabError, match=r"lab t-capture: no capture on segment\(s\) seg after 5s \(seg: .*nosuchbr0"):
            capture.start(eng, LAB, image)
    finally:
        eng.remove_lab(LAB)
    assert not eng.containers(LAB) and not eng.networks(LAB)
