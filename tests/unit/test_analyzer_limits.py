"""The analyser on hostile input: malformed control messages, captures bigger than its
limits, files cut off mid-record, and the `analyze` command's output and errors."""
import struct
import subprocess
import sys

import pytest
from scapy.layers import pptp as scapy_pptp
from scapy.utils import wrpcapng

from lab import pptp
from lab.pptp import control, reader, session

from . import pptpgen as g

CONTROL_TYPES = [scapy_pptp.PPTPStartControlConnectionRequest, scapy_pptp.PPTPStartControlConnectionReply,
                 scapy_pptp.PPTPStopControlConnectionRequest, scapy_pptp.PPTPStopControlConnectionReply,
                 scapy_pptp.PPTPEchoRequest, scapy_pptp.PPTPEchoReply, scapy_pptp.PPTPOutgoingCallRequest,
                 scapy_pptp.PPTPOutgoingCallReply, scapy_pptp.PPTPIncomingCallRequest,
                 scapy_pptp.PPTPIncomingCallReply, scapy_pptp.PPTPIncomingCallConnected,
                 scapy_pptp.PPTPCallClearRequest, scapy_pptp.PPTPCallDisconnectNotify,
                 scapy_pptp.PPTPWANErrorNotify, scapy_pptp.PPTPSetLinkInfo]


def with_length(msg: bytes) -> bytes:
    """msg with its length field set to its size, so the stream delimits it as one message."""
    return len(msg).to_bytes(2, "big") + msg[2:] if len(msg) >= 2 else msg


class Control:
    """A control connection fed straight to the Analyzer, segment by segment."""

    def __init__(self) -> None:
        self.a = session.Analyzer("test")
        self.seq = {"client": 1000, "server": 5000}
        self.frame = 0
        self.send("client", b"", flags=0x02)
        self.send("server", b"", flags=0x12)

    def send(self, sender, data, flags=0x18):
        self.frame += 1
        src, dst, sport, dport = ((g.CLIENT, g.SERVER, g.CPORT, 1723) if sender == "client"
                                  else (g.SERVER, g.CLIENT, 1723, g.CPORT))
        seq = self.seq[sender] - (1 if flags & 0x02 else 0)
        self.a.add(reader.Packet(self.frame, 1e9 + self.frame, src, dst, "tcp", sport, dport, seq, flags, data))
        self.seq[sender] += len(data)
        return self


@pytest.mark.parametrize("kind", CONTROL_TYPES, ids=lambda k: k.__name__[4:])
def test_every_control_type_truncated_at_every_length_is_reported_not_raised(kind):
    whole = with_length(bytes(kind()))  # scapy's Incoming-Call-Reply says 148 for its 24 octets
    m = control.decode(whole)
    assert not m.errors and m.fields
    for cut in range(len(whole)):
        c = Control()
        c.send("client", bytes(g.sccrq())).send("server", bytes(g.sccrp()))
        c.send("client", bytes(g.ocrq())).send("server", bytes(g.ocrp()))
        c.send("client", bytes(g.PPTPEchoRequest(identifier=cut)))
        c.send("server", with_length(whole[:cut]))
        c.send("server", bytes(g.PPTPEchoReply(identifier=cut, result_code=1)))
        (s,) = c.a.finish()
        assert s.calls[0].sli == [] and s.calls[0].wen == [], cut
        if cut >= control.HEADER.size:  # a whole header: the stream delivers it as a message
            (bad,) = [e for e in s.events if e.malformed]
            assert bad.sender == "server" and bad.what == m.name and "truncated" in bad.detail
            assert any(f"malformed {m.name} skipped" in e for e in s.errors), s.errors
            assert s.phase == "lcp" and s.echoes[0]["reply_ts"] is not None  # the stream went on


def test_malformed_message_is_red_on_the_ladder():
    from lab.reports import report
    c = Control()
    c.send("client", bytes(g.sccrq())).send("server", with_length(bytes(g.PPTPEchoRequest())[:13]))
    (s,) = c.a.finish()
    assert "#b00" in [line for line in report.ladder_svg(s).splitlines() if "ECHORQ" in line][0]


def test_stream_memory_is_bounded_by_garbage_lengths_and_gaps():
    st = control.Stream()
    st.syn(0)
    # A header claiming 60000 octets is no PPTP message: the stream does not wait for them.
    st.feed(1, struct.pack("!HHIHH", 60000, 1, control.MAGIC, 1, 0) + bytes(500))
    assert len(st.buf) < control.MAX_LENGTH
    for i in range(100):  # out-of-order segments after a hole: pending octets stay bounded
        st.feed(10_000 + i * 1000, bytes(1000))
        assert st.pending_bytes <= control.Stream.MAX_PENDING_BYTES
    assert st.gaps and len(st.errors) <= control.MAX_ERRORS


# ------------------------------------------------------------------ memory limits
def test_limits_keep_lists_bounded_and_say_what_was_not_detailed(tmp_path, monkeypatch):
    for name, value in (("MAX_SESSIONS", 3), ("MAX_EVENTS", 10), ("MAX_RECORDS", 5), ("MAX_KINDS", 4)):
        monkeypatch.setattr(session, name, value)
    cap = g.full_session(teardown=None, data_frames=2)
    for i in range(30):  # a flood of LCP Configure-Requests in the one call
        cap.gre("client", g.ppp(g.LCP_REQ_CLIENT))
    for i in range(8):
        cap.control("client", g.PPTPEchoRequest(identifier=i))
        cap.control("server", g.PPTPEchoReply(identifier=i, result_code=1))
    for proto in range(0x4021, 0x4031, 2):  # unknown PPP protocols: their names are not kept
        cap.gre("client", struct.pack("!BBH", 0xFF, 3, proto) + bytes(4))
    for i in range(6):  # GRE between six more endpoint pairs: two fit, four are only counted
        other = g.Capture(client=f"192.0.2.{i + 1}", server=g.SERVER)
        other.t = cap.t
        other.gre("client", g.mppe_data())
        other.gre("server", g.mppe_data())
        cap.frames += other.frames
    path = cap.write(tmp_path / "big.pcap")
    a = session.Analyzer(str(path))
    for pkt in reader.packets(path):
        a.add(pkt)
    sessions = a.finish()
    assert len(sessions) == 3 and len(a._orphans) == 2 and len(a._by_conn) == 1
    assert a.stats["sessions_not_detailed"] == 4 and a.stats["packets_not_detailed"] == 8
    s = sessions[0]
    assert len(s.events) == 10 and s.dropped["events"] > 30
    assert len(s.echoes) == 5 and s.dropped["echoes"] == 3 and not s.errors  # no "matches no request"
    kinds = s.calls[0].to_server.ppp
    assert set(kinds) == {"LCP", "CHAP", "CCP", "IPCP", "MPPE", "other"} and kinds["other"] == 8
    assert s.calls[0].ppp["lcp_acked_by"] == ["server", "client"]  # a set, not one entry per frame
    assert s.phase == "data"

    report = pptp.analyze([path])
    data = report.to_dict()
    assert data["stats"][str(path)]["sessions_not_detailed"] == 4
    assert data["sessions"][0]["dropped"]["events"] == s.dropped["events"]
    assert data["limits"]["sessions"] == 3
    text = console_text(report)
    assert "4 more sessions (8 packets) past the limit of 3 sessions" in text
    assert f"{s.dropped['events']} events" in text and "not detailed" in text


def test_detail_budget_is_shared_by_all_sessions(tmp_path, monkeypatch):
    monkeypatch.setattr(session, "MAX_DETAIL", 25)
    caps = [g.full_session(g.Capture(cport=40000 + i)) for i in range(3)]
    frames = [f for c in caps for f in c.frames]
    path = tmp_path / "three.pcap"
    g.wrpcap(str(path), frames)
    sessions = pptp.analyze([path]).sessions
    assert sum(len(s.events) + len(s.echoes) for s in sessions) == 25
    assert sessions[2].dropped["events"] and not sessions[2].dropped["teardown"]
    assert [s.phase for s in sessions] == ["teardown"] * 3  # teardown steps are kept for the verdict


def test_duplicate_window_is_a_fixed_size_ring():
    d = session.Direction("a", "b", 1)

    def add(seq):
        d.add(reader.Packet(0, 0.0, "a", "b", "gre", gre=reader.gre_mod.Gre(
            False, False, True, True, False, 0, False, 0, 1, 0x880B, 4, 1, seq, None, b"\x00\xfd\x00\x00")))

    for seq in range(1, 5001):
        add(seq)
    add(4999)
    add(10)  # older than the window: late, not a duplicate it can prove
    add(5000 + session.SEEN_WINDOW + 10)  # a big gap clears the whole window
    add(5000 + session.SEEN_WINDOW + 5)
    assert (d.duplicates, d.reordered) == (1, 2)
    assert len(d._seen) == session.SEEN_WINDOW


def console_text(report) -> str:
    from rich.console import Console

    from lab.reports import report as report_mod
    con = Console(width=200, record=True, file=open("/dev/null", "w"))
    report_mod.print_report(report, con)
    return con.export_text()


# ------------------------------------------------------------------ captures cut short
def pcap_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 24
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets


def test_pcap_cut_mid_record_or_mid_header_is_reported_with_its_offset(tmp_path):
    whole = g.full_session().write(tmp_path / "whole.pcap").read_bytes()
    last = pcap_offsets(whole)[-1]
    assert pptp.analyze([tmp_path / "whole.pcap"]).truncated == []
    for cut in (last + 5, last + 16 + 3, len(whole) - 1):
        path = tmp_path / f"cut{cut}.pcap"
        path.write_bytes(whole[:cut])
        report = pptp.analyze([path])
        assert report.truncated == [{"file": str(path), "offset": last}]
        assert report.to_dict()["truncated"] == report.truncated
        assert len(report.sessions) == 1 and "cut off mid-record at byte" in console_text(report)
    garbage = bytearray(whole)
    garbage[last + 8:last + 12] = struct.pack("<I", 0xFFFFFFF0)  # a record length no file has
    (tmp_path / "garbage.pcap").write_bytes(bytes(garbage))
    assert pptp.analyze([tmp_path / "garbage.pcap"]).truncated[0]["offset"] == last


def test_pcapng_cut_mid_block_is_reported_with_its_offset(tmp_path):
    path = tmp_path / "whole.pcapng"
    wrpcapng(str(path), g.full_session().frames)
    whole = path.read_bytes()
    expected = [p.to_dict() for p in pptp.analyze([tmp_path / "whole.pcapng"]).sessions]
    assert expected and [p.to_dict() for p in pptp.analyze([g.full_session().write(tmp_path / "w.pcap")]).sessions
                         ][0]["phase"] == expected[0]["phase"]
    blocks, pos = [], 0
    while pos < len(whole):
        blocks.append(pos)
        pos += struct.unpack_from("<I", whole, pos + 4)[0]
    last = blocks[-1]
    for cut in (last + 4, last + 30, len(whole) - 1):
        (tmp_path / "cut.pcapng").write_bytes(whole[:cut])
        report = pptp.analyze([tmp_path / "cut.pcapng"])
        assert report.truncated == [{"file": str(tmp_path / "cut.pcapng"), "offset": last}]
    assert pptp.analyze([tmp_path / "whole.pcapng"]).truncated == []


# ------------------------------------------------------------------ the analyze command
def cli(*args, **kw):
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "analyze", *map(str, args)],
                          capture_output=True, text=True, **kw)


def test_cli_analysis_goes_to_stdout_so_it_can_be_redirected(tmp_path):
    pcap = g.full_session().write(tmp_path / "s.pcap")
    out = cli(pcap)
    assert out.returncode == 0 and out.stderr == ""
    assert "PPTP sessions" in out.stdout and "teardown" in out.stdout


def test_cli_ladder_into_a_missing_folder_is_a_one_line_error(tmp_path):
    pcap = g.full_session().write(tmp_path / "s.pcap")
    out = cli(pcap, "--ladder", tmp_path / "nowhere" / "l.html")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"error: --ladder {tmp_path / 'nowhere' / 'l.html'}: "
                                               f"no folder {tmp_path / 'nowhere'}"]


def test_cli_truncated_capture_fails_unless_allowed(tmp_path):
    whole = g.full_session().write(tmp_path / "s.pcap").read_bytes()
    last = pcap_offsets(whole)[-1]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:last + 20])
    out = cli(cut)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        f"error: {cut}: cut off mid-record at byte {last} (--allow-truncated analyses it up to there)"]
    out = cli(cut, "--allow-truncated")
    assert out.returncode == 0 and "PPTP sessions" in out.stdout
    assert f"warning: {cut}: cut off mid-record at byte {last}" in out.stderr
