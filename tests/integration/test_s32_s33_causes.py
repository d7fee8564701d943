"""SPEC S32: every cause on the list (lab.cause) has a lab that fails for exactly that cause,
and passes once the cause is removed. One topology holds a client per cause that is not a
firewall rule (tests/integration/topologies/causes.yaml): no NAT mapping, refused, no route,
the reverse-path filter, conntrack INVALID, authentication, a chain's policy, a routing
loop, an ICMP error (host unreachable). `rule` has
its labs in test_examples (the S22 variants); bullseye runs this topology in test_other_kernels. The test asserts the cause (the check of `expect:
{cause: C}`), not the text."""
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from tests import REPO

HERE = REPO / "tests" / "integration" / "topologies"
CAUSES = {"c-nat": "no-nat-mapping", "c-ref": "refused", "c-nr": "no-route", "c-rpf": "rp-filter",
          "c-inv": "conntrack-invalid", "c-auth": "auth", "c-pol": "policy",
          "c-loop": "loop", "c-hu": "icmp"}


def pptp_lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=900)


def junit_cases(out: str) -> dict[str, bool]:
    found = [line.split(": ", 1)[1].strip() for line in out.splitlines() if line.startswith("JUnit")]
    assert found, out[-3000:]
    root = ET.parse(found[-1]).getroot()
    return {c.get("name"): c.find("failure") is None for c in root.iter("testcase")}


def fixed(tmp_path: Path) -> Path:
    """causes.yaml with each cause removed: the routes back, a loose filter, a symmetric path,
    the NAT's PPTP editor, the server's address, the right secret, GRE accepted, no stale
    host route."""
    data = yaml.safe_load((HERE / "causes.yaml").read_text())
    data["name"] = "t-causes-fixed"
    nodes = data["nodes"]
    nodes["srv"]["routes"] = [{"to": "10.202.0.0/24", "via": "10.202.1.1"},
                              {"to": "10.204.0.0/24", "via": "10.201.1.1"},
                              {"to": "10.205.0.0/24", "via": "10.201.3.1"},
                              {"to": "10.206.0.0/24", "via": "10.201.4.1"},
                              {"to": "10.207.0.0/24", "via": "10.201.6.1"},
                              {"to": "10.208.0.0/24", "via": "10.201.7.1"},
                              {"to": "10.209.0.0/24", "via": "10.201.8.1"}]
    nodes["r-l2"]["routes"] = [{"to": "10.208.0.0/24", "via": "10.208.1.1"}]
    nodes["r-rpf"]["rp_filter"] = "loose"
    nodes["gw"]["nat"]["pptp_editor"] = True
    nodes["c-ref"]["pptp_client"]["server"] = "10.203.0.10"
    nodes["c-hu"]["pptp_client"]["server"] = "10.201.8.10"
    nodes["c-auth"]["pptp_client"]["secret"] = "alice-secret"
    data["expect"] = {"clients": {c: {"tunnel": "up"} for c in CAUSES}}
    shutil.copy(HERE / "causes-invalid.nft", tmp_path / "causes-invalid.nft")
    policy = (HERE / "causes-policy.nft").read_text()
    (tmp_path / "causes-policy.nft").write_text(policy.replace("tcp dport 1723 accept", "tcp dport 1723 accept\n"
                                                               "        ip protocol gre accept"))
    path = tmp_path / "causes-fixed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# The nodes each client's cause needs besides the server.
PATH_OF = {"c-nat": {"gw"}, "c-ref": {"web"}, "c-nr": {"r-nr"}, "c-rpf": {"r-rpf"}, "c-inv": {"r-inv", "fw-inv"},
           "c-auth": set(), "c-pol": {"fw-pol"}, "c-loop": {"r-l1", "r-l2"}, "c-hu": {"r-hu"}}


def only(tmp_path: Path, clients: list[str]) -> Path:
    """causes.yaml with only these clients and what their causes need: the server keeps the
    legs and routes onto the networks that are left."""
    import ipaddress

    data = yaml.safe_load((HERE / "causes.yaml").read_text())
    keep = {"srv", *clients, *(n for c in clients for n in PATH_OF[c])}
    nodes = {k: v for k, v in data["nodes"].items() if k in keep}
    used = {net for name, n in nodes.items() if name != "srv" for net in n["interfaces"]}
    srv = nodes["srv"]
    srv["interfaces"] = {k: v for k, v in srv["interfaces"].items() if k in used}
    subnets = [ipaddress.ip_network(data["networks"][k]["subnet"]) for k in used]
    srv["routes"] = [r for r in srv.get("routes", []) if any(ipaddress.ip_address(r["via"]) in n for n in subnets)]
    data.update(name="t-causes-some", nodes=nodes, networks={k: v for k, v in data["networks"].items() if k in used},
                expect={"clients": {c: data["expect"]["clients"][c] for c in clients}})
    for f in ("causes-invalid.nft", "causes-policy.nft"):
        shutil.copy(HERE / f, tmp_path / f)
    path = tmp_path / "causes-some.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_S32_each_lab_fails_for_its_cause_and_passes_without_it(lab_engine, tmp_path):
    eng, _ = lab_engine
    res = pptp_lab("test", str(HERE / "causes.yaml"), "--engine", eng.name)
    out = res.stdout + res.stderr
    cases = junit_cases(out)
    for client, cause in CAUSES.items():
        assert cases.get(f"{client}: fails for cause {cause}") is True, (client, out[-4000:])
    assert res.returncode == 0, out[-3000:]

    res = pptp_lab("test", str(fixed(tmp_path)), "--engine", eng.name)
    out = res.stdout + res.stderr
    cases = junit_cases(out)
    for client in CAUSES:
        assert cases.get(f"{client}: tunnel up") is True, (client, out[-4000:])
    assert res.returncode == 0, out[-3000:]
