"""The radius kind (issue #13): a pptp-server authenticates its users against a FreeRADIUS
node through pppd's radius plugin. alice's tunnel comes up (MS-CHAPv2, MPPE-128 keys from
RADIUS, a ping through it); eve is rejected and her session stops in authentication. The
capture shows the RADIUS exchange itself: an Access-Accept and an Access-Reject."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import dpkt

from tests import REPO

TOPO = REPO / "tests" / "integration" / "topologies" / "radius.yaml"
RADIUS = ("10.74.0.30", 1812)
ACCEPT, REJECT = 2, 3  # RADIUS codes (RFC 2865)


def radius_replies(pcap: Path) -> list[int]:
    """Codes of the RADIUS replies the radius node sent on the segment."""
    codes = []
    with pcap.open("rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP):
                src = ".".join(str(b) for b in ip.src)
                if (src, ip.data.sport) == RADIUS and ip.data.data:
                    codes.append(ip.data.data[0])
    return codes


def test_a_tunnel_authenticated_through_radius_and_a_rejected_user(lab_engine):
    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "test", str(TOPO)],
                         capture_output=True, text=True, cwd=REPO, timeout=900)
    out = res.stdout + res.stderr
    found = [line.split("JUnit: ", 1)[1].strip() for line in out.splitlines() if line.startswith("JUnit: ")]
    assert found, out[-3000:]
    junit = Path(found[0])
    root = ET.parse(junit).getroot()
    cases = {c.get("name"): c.find("failure") is None for c in root.iter("testcase")}
    assert res.returncode == 0 and all(cases.values()), (cases, out[-3000:])
    assert {"alice: tunnel up", "alice: reaches 172.18.0.1", "eve: tunnel fails at auth"} <= set(cases), cases
    codes = radius_replies(junit.parent / "lan.pcap")
    assert ACCEPT in codes and REJECT in codes, codes
