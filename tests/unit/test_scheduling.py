"""`make test`'s xdist scheduler (tests/integration/conftest.py): the reference-subnet modules
and the own-VM modules are one scope each, and the costliest scope waiting is sent first."""
from collections import OrderedDict

from tests.integration import conftest


class Worker:
    shutting_down = False

    def __init__(self, collection):
        self.collection, self.sent = collection, []

    def send_runtest_some(self, indexes):
        self.sent.append({self.collection[i].split("::", 1)[0] for i in indexes})


def test_costliest_scope_first_and_groups_stay_together():
    ids = ["tests/unit/test_a.py::t1", "tests/unit/test_a.py::t2", "tests/unit/test_b.py::t",
           "tests/integration/test_s21_port_forward.py::t", "tests/integration/test_s28_many_tunnels.py::t",
           "tests/integration/test_lab_default.py::t", "tests/integration/test_spec_s1_s11.py::t",
           "tests/integration/test_crash_safety.py::t", "tests/integration/test_new_thing.py::t"]
    cls = conftest.scheduler()
    sched = cls.__new__(cls)
    sched.assigned_work, sched.workqueue = {}, OrderedDict()
    for nodeid in ids:
        sched.workqueue.setdefault(sched._split_scope(nodeid), {})[nodeid] = False
    worker = Worker(ids)
    sched.registered_collections = {worker: ids}
    while sched.workqueue:
        sched._assign_work_unit(worker)
    stems = [sorted(p.rsplit("/", 1)[1] for p in sent) for sent in worker.sent]
    # S28 last: on a quieter machine (its COST is 0)
    assert stems == [["test_lab_default.py", "test_spec_s1_s11.py"], ["test_crash_safety.py"],
                     ["test_new_thing.py"], ["test_s21_port_forward.py"], ["test_a.py"], ["test_b.py"],
                     ["test_s28_many_tunnels.py"]]
