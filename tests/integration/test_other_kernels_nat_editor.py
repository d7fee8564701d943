"""Issue #11 item 5: SPEC S19/S20 (the NAT editor with one and three clients, with and
without it) on every shipped kernel besides the default, which the rest of the suite runs
on. The tests are test_s19_s20_nat_editor's own, collected here once more per kernel: one
lab per kernel, each on that kernel's VM. A kernel whose helper behaves otherwise fails
here by name (test IDs end in [kernel=...]).

These VMs run one after another in the suite's "own-vm" scope (tests/integration/conftest.py)
and after the default topology's `expect:` on the same kernels
(test_other_kernels_pptp_lab_test.py), so never more than two guests run at once."""
import pytest

from lab import suites
from tests.integration.test_s19_s20_nat_editor import (  # noqa: F401 - collected here per kernel
    test_S19_editor_rewrites_the_call_id_in_control_and_gre,
    test_S20_same_call_id_with_editor_all_tunnels_carry_data_at_once,
    test_S20_without_the_editor_the_tunnels_fail_and_the_capture_says_how,
    test_S19_editor_back_on_all_tunnels_up_again)

OTHER_KERNELS = [k for k in suites.KERNELS if k != suites.DEFAULT]

pytestmark = [pytest.mark.topology("nat-clients", name="t-nat"), pytest.mark.kernel(*OTHER_KERNELS)]
