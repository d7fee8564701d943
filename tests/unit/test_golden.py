"""Golden files for the loader: each shipped topology -> the model it must load into
(tests/unit/golden/<file>.json). After an intended change of a topology or of the model:
    .venv/bin/python tests/unit/test_golden.py   # rewrites the golden files; review the diff"""
import json
import sys
from pathlib import Path

import pytest

from lab.model import topology
from tests import REPO

GOLDEN = Path(__file__).parent / "golden"
SHIPPED = sorted((REPO / "topologies").glob("*.yaml"))


def model(path: Path) -> dict:
    return json.loads(topology.load(path).model_dump_json())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_topology_loads_into_its_golden_model(path):
    golden = GOLDEN / f"{path.stem}.json"
    assert golden.exists(), f"no golden file for {path.name}: run {__file__}"
    assert model(path) == json.loads(golden.read_text())


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for p in SHIPPED:
        (GOLDEN / f"{p.stem}.json").write_text(json.dumps(model(p), indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN / (p.stem + '.json')}", file=sys.stderr)
