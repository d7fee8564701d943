"""What a `pptp-lab test` run leaves in runs/<lab>/<run-id>/, and reading it back.

Next to the pcaps and manifest.json (lab.up.capture) a run gets junit.xml, checks.json, the
topology (topology.json, secrets removed: runs/ travels as a CI artefact), versions.json (the
kernel and PPTP packages its pptp nodes ran), report.html, report.json and each capture with
the analyser's findings as packet comments (NAME.annotated.pcapng, lab.reports.annotate).
`pptp-lab report RUN_DIR` rebuilds the reports and those captures from those files alone, so a
run can be read again later or on another machine, with a newer pptp-lab."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.markup import escape

from .. import pptp
from . import annotate, report
from ..model import topology
from ..up.capture import MANIFEST
from ..up.lifecycle import PPTP_PACKAGES, VERSION_TEXT
from ..diagnosis.checks import Check
from ..core.errors import LabError
from ..core.host import console
from ..core.paths import private_dir, runs_dir

CHECKS = "checks.json"
TOPOLOGY = "topology.json"
PAGE = "report.html"
DATA = "report.json"
VERSIONS = "versions.json"
DATA_FLOW = "data-flow.json"  # the transfers' and MTU figures (SPEC S29-S31), when there were any


@dataclass
class Result:
    topo: topology.Topology
    checks: list[Check] = field(default_factory=list)
    run_dir: Path | None = None
    report: pptp.Report | None = None
    faults: list[dict] = field(default_factory=list)  # lab.up.fault records from manifest.json
    # Per client whose `expect` asked for a transfer (SPEC S29-S30): the MRU each side asked
    # for, the tunnel interface's MTU, the largest DF packet each way, the transfer's figures
    # and its outer GRE packets per segment (lab.testing.testrun.data_flow).
    data_flow: dict[str, dict] = field(default_factory=dict)
    # node -> {"kernel": release, package: version} of its pptp nodes (lab.up.lifecycle.versions)
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    annotated: dict[str, str] = field(default_factory=dict)  # capture's file name -> its annotated copy's
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds (lab.core.timing)
    # segment -> packets its capture lost (tcpdump's "dropped by kernel"), where it lost any
    capture_losses: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def write(res: Result) -> tuple[Path, Path]:
    """Everything of a finished run (the pcaps are there already); (junit.xml, report.html)."""
    out = res.run_dir or private_dir(runs_dir() / res.topo.name / "test")
    junit = out / "junit.xml"
    junit.write_text(report.junit_xml(res.topo.name, [(c.name, c.passed, c.detail, c.seconds) for c in res.checks]))
    (out / CHECKS).write_text(json.dumps([asdict(c) for c in res.checks], indent=1))
    (out / TOPOLOGY).write_text(json.dumps(topology.public_data(res.topo), indent=1))
    (out / VERSIONS).write_text(json.dumps(res.versions, indent=1))
    if res.data_flow:
        (out / DATA_FLOW).write_text(json.dumps(res.data_flow, indent=1))
    page, _ = write_reports(res, out)
    return junit, page


def data(res: Result) -> dict:
    """report.json: the checks and the analysis of the run's captures."""
    return {"lab": res.topo.name, "passed": res.passed, "checks": [asdict(c) for c in res.checks],
            "data_flow": res.data_flow, "versions": res.versions,
            "timings": {k: round(v, 2) for k, v in res.timings.items()},
            "capture_losses": res.capture_losses,
            "analysis": res.report.to_dict() if res.report else None}


def write_reports(res: Result, out: Path) -> tuple[Path, Path]:
    res.annotated = annotate_captures(res, out)
    page, js = out / PAGE, out / DATA
    page.write_text(report.test_html(res))
    js.write_text(json.dumps(data(res), indent=1, default=str))
    return page, js


def annotate_captures(res: Result, out: Path) -> dict[str, str]:
    """NAME.annotated.pcapng next to each analysed NAME.pcap, the packet each failed check
    points at (Check.where) commented too; {capture's name: its annotated copy's}."""
    if res.report is None:
        return {}
    failed: dict[str, dict[int, list[str]]] = {}
    for c in res.checks:
        w = c.where or {}
        if not c.passed and isinstance(w.get("frame"), int):
            failed.setdefault(str(w.get("capture")), {}).setdefault(w["frame"], []).append(
                f"check failed: {c.name}: {c.detail}")
    done = {}
    for f in map(Path, res.report.files):
        name = f.stem + annotate.SUFFIX
        extra = {frame: "; ".join(texts) for frame, texts in failed.get(f.name, {}).items()}
        try:
            annotate.write(f, out / name, res.report, extra)
        except (LabError, OSError) as exc:  # the report is written all the same
            console.print(f"[yellow]{escape(f.name)}: no annotated copy[/]: {escape(str(exc))}", highlight=False)
            continue
        done[f.name] = name
    return done


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: not readable as JSON ({getattr(exc, 'strerror', None) or exc})") from None


def _manifest(run_dir: Path) -> dict:
    """A run's manifest.json as a dict; {} when it is missing, unreadable or not an object."""
    try:
        manifest = json.loads((Path(run_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def manifest_faults(run_dir: Path) -> list[dict]:
    """The faults a run's manifest.json lists (lab.up.fault records), each checked for the
    fields a report draws; [] when there is no manifest or it lists none."""
    found = _manifest(run_dir).get("faults")
    return [f for f in found if isinstance(f, dict) and isinstance(f.get("started"), (int, float))
            and isinstance(f.get("clock_offset", 0) or 0, (int, float))
            and isinstance(f.get("verb"), str) and isinstance(f.get("node"), str)
            and isinstance(f.get("args"), list)] if isinstance(found, list) else []


def manifest_capture_losses(run_dir: Path) -> dict[str, int]:
    """segment -> packets its tcpdump lost, for the captures of manifest.json that lost any."""
    found = _manifest(run_dir).get("captures")
    out = {}
    for c in found if isinstance(found, list) else []:
        counts = c.get("tcpdump") if isinstance(c, dict) else None
        lost = counts.get("dropped") if isinstance(counts, dict) else None
        if isinstance(c.get("segment"), str) and isinstance(lost, int) and not isinstance(lost, bool) and lost > 0:
            out[c["segment"]] = lost
    return out


def read_versions(run_dir: Path) -> dict[str, dict[str, str]]:
    """versions.json as `write` leaves it, keeping only the names and values that look like
    what lab.up.lifecycle.parse_versions gives; {} without one (a run of an older pptp-lab)."""
    try:
        found = json.loads((Path(run_dir) / VERSIONS).read_text())
    except (OSError, ValueError):
        return {}
    keys = ("kernel", *PPTP_PACKAGES)
    return {str(node): {k: v for k, v in got.items() if k in keys and isinstance(v, str) and VERSION_TEXT.fullmatch(v)}
            for node, got in found.items() if isinstance(got, dict)} if isinstance(found, dict) else {}


def load(run_dir: Path) -> Result:
    """A run read back from its directory; LabError naming everything that is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LabError(f"{run_dir}: no such run directory")
    missing = [n for n in (MANIFEST, CHECKS, TOPOLOGY) if not (run_dir / n).is_file()]
    files: list[Path] = []
    if MANIFEST not in missing:
        manifest = _json(run_dir / MANIFEST)
        captures = [c["file"] for c in (manifest.get("captures") or [] if isinstance(manifest, dict) else [])
                    if isinstance(c, dict) and isinstance(c.get("file"), str)]
        files = [run_dir / Path(c).name for c in captures]  # a name: never a path out of the run
        missing += [f.name for f in files if not f.is_file()]
        if not captures:
            missing.append(f"captures ({MANIFEST} lists none)")
    if missing:
        raise LabError(f"{run_dir}: missing {', '.join(missing)}: not the directory of a `pptp-lab test` run")
    try:
        topo = topology.Topology.model_validate(_json(run_dir / TOPOLOGY))
        checks = [Check(**c) for c in _json(run_dir / CHECKS)]
    except (ValueError, TypeError) as exc:
        raise LabError(f"{run_dir}: {TOPOLOGY} or {CHECKS} is not as `pptp-lab test` writes it: "
                       + " ".join(str(exc).split())) from None
    try:
        analysed = pptp.analyze(files)
    except ValueError as exc:
        raise LabError(f"{run_dir}: {exc}") from None
    versions = {n: v for n, v in read_versions(run_dir).items() if n in topo.nodes}
    flows = _json(run_dir / DATA_FLOW) if (run_dir / DATA_FLOW).is_file() else {}
    return Result(topo, checks, run_dir, analysed, manifest_faults(run_dir), versions=versions,
                  data_flow=flows if isinstance(flows, dict) else {}, timings=read_timings(run_dir),
                  capture_losses=manifest_capture_losses(run_dir))


def read_timings(run_dir: Path) -> dict[str, float]:
    """The run's phase times from its report.json (numbers only; anything else is dropped)."""
    try:
        got = _json(run_dir / DATA).get("timings") if (run_dir / DATA).is_file() else None
    except (LabError, AttributeError):
        return {}
    return {str(k): float(v) for k, v in got.items() if isinstance(v, (int, float)) and not isinstance(v, bool)} \
        if isinstance(got, dict) else {}
