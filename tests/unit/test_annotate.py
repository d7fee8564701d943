"""`pptp-lab analyze CAPTURE --annotate OUT.pcapng`: the capture again, each packet the analyser
has something to say about commented (read back with tshark, as Wireshark shows them), every
packet kept with its bytes, timestamp and link type. Captures made with scapy (pptpgen)."""
import shutil
import subprocess
import sys
from decimal import Decimal

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import CookedLinux, Ether
from scapy.layers.ppp import PPP_LCP_Echo
from scapy.utils import PcapNgReader, PcapReader, PcapWriter

from lab import pptp
from lab.core.errors import LabError
from lab.reports import annotate

from . import pptpgen as g

ROUTER = "198.18.52.2"  # sends the ICMP error about the server's GRE
SEP = "~"  # between the comments of one packet in tshark's output (no comment has it)


def lossy(path):
    """A whole session with echoes (PPTP and LCP), two GRE packets lost (one turns up late, then
    again), a server GRE packet a check points at, an ICMP error about it, and the client's
    teardown. Returns (path, {finding: frame})."""
    c = g.full_session(data_frames=2, teardown=None)
    at = {}

    def mark(name):
        at[name] = len(c.frames)

    c.control("client", g.PPTPEchoRequest(identifier=7))
    mark("echo request")
    c.control("server", g.PPTPEchoReply(identifier=7, result_code=1))
    mark("echo reply")
    c.gre("server", g.ppp(PPP_LCP_Echo(code=9, id=3, magic_number=0x1234)))
    mark("lcp request")
    c.gre("client", g.ppp(PPP_LCP_Echo(code=10, id=3, magic_number=0x9999)))
    mark("lcp reply")
    lost = c.gre_seq["client"]
    c.gre_seq["client"] += 2  # two never sent
    c.gre("client", g.mppe_data())
    mark("gap")
    c.gre("client", g.mppe_data(), seq=lost)
    mark("late")
    c.gre("client", g.mppe_data(), seq=lost)
    mark("duplicate")
    c.gre("server", g.mppe_data())
    mark("dropped")
    c.icmp(ROUTER, quoted=-1)
    mark("icmp")
    c.t += 0.2
    g.hang_up(c, "client")
    return c.write(path), at, lost


def tshark_comments(path) -> dict[int, list[str]]:
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "frame.comment", "-T", "fields", "-E",
                          f"aggregator={SEP}", "-e", "frame.number", "-e", "frame.comment"],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        frame, _, text = line.partition("\t")
        found[int(frame)] = text.split(SEP)
    return found


def frames_saying(found: dict[int, list[str]], text: str) -> list[int]:
    return sorted(f for f, said in found.items() if any(text in x for x in said))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_findings_are_on_their_frames_as_wireshark_reads_them(tmp_path):
    pcap, at, lost = lossy(tmp_path / "s.pcap")
    report = pptp.analyze([pcap])
    (s,) = report.sessions
    assert s.phase == "teardown" and s.initiator == "client"
    n = annotate.write(pcap, tmp_path / "out.pcapng", report,
                       {at["dropped"]: "check failed: client: tunnel up: GRE to the client dropped by fw"})
    found = tshark_comments(tmp_path / "out.pcapng")
    assert n == len(found)
    first = {e.what: e.frame for e in reversed(s.events)}  # the first event of each name
    step1 = s.teardown[0].frame
    expected = {
        "verdict: phase teardown: tunnel carried data and was torn down by the client": 1,
        "phase tcp begins (TCP SYN from the client)": 1,
        "phase control begins (SCCRQ from the client)": first["SCCRQ"],
        "phase call begins (OCRQ from the client)": first["OCRQ"],
        "phase lcp begins (LCP Configure-Request from the client)": first["LCP Configure-Request"],
        "phase auth begins (CHAP Challenge from the server)": first["CHAP Challenge"],
        "phase ccp begins (CCP Configure-Request from the client)": first["CCP Configure-Request"],
        "phase ipcp begins (IPCP Configure-Request from the client)": first["IPCP Configure-Request"],
        "phase data begins": max(e.frame for e in s.events if e.what.startswith("IPCP")) + 1,
        f"PPTP Echo-Request 7 from the client: answered in frame {at['echo reply']}": at["echo request"],
        f"PPTP Echo-Reply to the client's Echo-Request 7 in frame {at['echo request']}": at["echo reply"],
        f"LCP Echo-Request 3 from the server: answered in frame {at['lcp reply']}": at["lcp request"],
        f"LCP Echo-Reply to the server's Echo-Request 3 in frame {at['lcp request']}": at["lcp reply"],
        f"GRE client → server call ID {g.SERVER_CALL}: seq {lost + 2} after a gap: {lost}-{lost + 1} missing":
            at["gap"],
        f"seq {lost} out of order (after seq {lost + 2})": at["late"],
        f"duplicate of seq {lost}": at["duplicate"],
        "check failed: client: tunnel up: GRE to the client dropped by fw": at["dropped"],
        f"session 1: {ROUTER} answered GRE with ICMP protocol unreachable": at["icmp"],
        "teardown step 1 of": step1,
        f"client initiated, after ICMP protocol unreachable from {ROUTER}": step1,
        "phase teardown begins": s.initiated["frame"],
    }
    for text, frame in expected.items():
        assert frames_saying(found, text) == [frame], (text, frame, found)
    assert at["icmp"] == step1  # the ICMP error is the path's first teardown step, before the initiator's
    assert frames_saying(found, "teardown step ") == [e.frame for e in s.teardown]
    assert frames_saying(found, "answered in frame") == [at["echo request"], at["lcp request"]]


def test_every_packet_keeps_its_bytes_timestamp_and_link_type(tmp_path):
    pcap, _, _ = lossy(tmp_path / "s.pcap")
    # Linux cooked capture at nanosecond resolution: neither scapy's default link type nor its
    # microseconds.
    cooked = tmp_path / "cooked.pcap"
    with PcapWriter(str(cooked), linktype=113, nano=True) as w:
        for i, p in enumerate(PcapReader(str(pcap))):
            q = CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02" * 6, proto=0x0800) / p[IP]
            q.time = p.time + Decimal(i % 7 + 1) / 10 ** 9  # nanoseconds that microseconds would lose
            w.write(q)
    said = {}
    for src in (pcap, cooked):
        out = tmp_path / f"{src.stem}.annotated.pcapng"
        assert annotate.write(src, out, pptp.analyze([src])) > 10
        said[src] = annotate.comments(pptp.analyze([src]), src)
        before, after = list(PcapReader(str(src))), list(PcapNgReader(str(out)))
        assert len(after) == len(before)
        assert [p.time for p in after] == [p.time for p in before]
        assert [p.original for p in after] == [p.original for p in before]
        assert {type(p) for p in after} == {type(p) for p in before} == {Ether if src == pcap else CookedLinux}
        assert pptp.analyze([out]).sessions[0].verdict == pptp.analyze([src]).sessions[0].verdict
    # The reader's fast path (Ethernet) and its general one (cooked) find the same on the same frames.
    assert said[pcap] == said[cooked] and any("after a gap" in x for xs in said[pcap].values() for x in xs)


def test_comments_the_capture_had_are_kept(tmp_path):
    pcap, _, _ = lossy(tmp_path / "s.pcap")
    once, twice = tmp_path / "once.pcapng", tmp_path / "twice.pcapng"
    annotate.write(pcap, once, pptp.analyze([pcap]))
    annotate.write(once, twice, pptp.analyze([once]), {1: "mine"})
    first, second = next(iter(PcapNgReader(str(once)))), next(iter(PcapNgReader(str(twice))))
    assert second.comments == first.comments * 2 + [b"mine"]
    assert any(b"phase tcp begins" in c for c in first.comments)


def test_a_comment_is_one_line_of_text_whatever_the_capture_holds(tmp_path):
    c = g.Capture().handshake().control("client", g.sccrq()).control("server", g.sccrp())
    pcap = c.write(tmp_path / "s.pcap")
    out = tmp_path / "o.pcapng"
    annotate.write(pcap, out, pptp.analyze([pcap]), {2: "two\nlines\x00 and\ta tab"})
    assert next(p for i, p in enumerate(PcapNgReader(str(out))) if i == 1).comments[-1] == b"two lines and a tab"


def test_the_capture_itself_is_never_overwritten(tmp_path):
    pcap, _, _ = lossy(tmp_path / "s.pcap")
    data = pcap.read_bytes()
    with pytest.raises(LabError, match="the capture itself"):
        annotate.write(pcap, tmp_path / "." / "s.pcap", pptp.analyze([pcap]))
    assert pcap.read_bytes() == data


def cli(*args):
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "analyze", *map(str, args)],
                          capture_output=True, text=True)


def test_cli_annotates_one_capture_into_a_pcapng(tmp_path):
    pcap, _, _ = lossy(tmp_path / "s.pcap")
    out = cli(pcap, "--annotate", tmp_path / "o.pcapng")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert any(b"duplicate of seq" in c for p in PcapNgReader(str(tmp_path / "o.pcapng")) for c in (p.comments or []))
    for args, said in (([pcap, pcap, "--annotate", tmp_path / "two.pcapng"],
                        "annotates one capture; give one CAPTURE (2 given)"),
                       ([pcap, "--annotate", tmp_path / "o.pcap"], "give a .pcapng file name"),
                       ([tmp_path / "o.pcapng", "--annotate", tmp_path / "o.pcapng"], "that is the capture itself")):
        before = (tmp_path / "o.pcapng").read_bytes()
        out = cli(*args)
        assert out.returncode == 2 and said in out.stderr, out.stderr
        assert not (tmp_path / "two.pcapng").exists() and (tmp_path / "o.pcapng").read_bytes() == before
