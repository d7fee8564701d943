"""lab.core.timing: where a run's time goes (issue #30)."""
from lab.core import timing


def test_phases_add_up_in_the_order_they_end_and_only_while_recorded():
    with timing.phase("before"):
        pass
    with timing.recording() as got:
        with timing.phase("nodes"):
            pass
        with timing.phase("dial"):
            pass
        with timing.phase("nodes"):
            pass
    assert list(got) == ["nodes", "dial"] and all(v >= 0 for v in got.values())
    with timing.phase("after"):
        pass
    assert "before" not in got and "after" not in got
    assert timing.line({"nodes": 12.06, "dial": 2.0}) == "nodes 12.1 s, dial 2.0 s"


def test_a_failing_phase_is_counted_too():
    with timing.recording() as got:
        try:
            with timing.phase("up"):
                raise ValueError
        except ValueError:
            pass
    assert "up" in got
