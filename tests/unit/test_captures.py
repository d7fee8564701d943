"""The analyser on third-party captures (../shared/captures, read in place, never copied),
the tshark oracle (every PPTP and GRE field equal to what tshark decodes), and fuzzing."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab import pptp
from tests import REPO
from lab.pptp import control, gre, ppp, reader

from . import pptpgen as g

CAPTURES = Path(os.environ.get("PPTP_LAB_CAPTURES", REPO.parent / "shared" / "captures"))
needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"no third-party captures at {CAPTURES}")


def cap(name):
    return CAPTURES / name


def sessions(name):
    return pptp.analyze([cap(name)]).sessions


@needs_captures
def test_packetlife_negotiation_cisco_pap_ipcp_nak():
    (s,) = sessions("packetlife-PPTP_negotiation.cap")
    assert (s.client, s.client_port, s.server) == ("20.0.0.2", 1999, "20.0.0.1")
    assert s.sccrq["vendor_name"] == "ixia" and s.sccrp["vendor_name"] == "Cisco Systems, Inc."
    call = s.calls[0]
    assert (call.client_call_id, call.server_call_id, call.reply["peer_call_id"]) == (1, 24, 1)
    assert call.to_server.call_id == 24 and call.to_client.call_id == 1
    assert call.ppp["auth"] == "PAP" and call.ppp["auth_result"] == "success"
    assert any(e.what == "IPCP Configure-Nak" for e in s.events)
    # Cisco's first ack is 0xFFFFFFFF ("nothing yet"); later acks supersede it.
    assert call.to_client.highest_ack != 0xFFFFFFFF
    assert not s.echoes and not s.teardown
    assert s.phase == "data"


@needs_captures
def test_ndpi_pptp_control_only_sli_from_server_and_call_clear():
    (s,) = sessions("ndpi-pptp.pcap")
    assert (s.client, s.client_port, s.server) == ("192.168.43.22", 41366, "191.101.61.1")
    assert s.sccrq["vendor_name"] == "cananian" and s.sccrp["vendor_name"] == "Microsoft"
    call = s.calls[0]
    assert (call.client_call_id, call.server_call_id) == (0, 11755)
    assert [x["sender"] for x in call.sli] == ["server", "server"]
    whats = [e.what for e in s.teardown]
    assert whats.index("CCRQ") < whats.index("CDN")
    assert [e.sender for e in s.teardown if e.what in ("CCRQ", "CDN")] == ["client", "server"]
    assert not call.to_server and not call.to_client
    assert "no GRE in either direction" in s.verdict


@needs_captures
def test_ndpi_gre_through_a_vlan_tag():
    (s,) = sessions("ndpi-gre.pcapng")
    assert s.gre_only and s.calls[0].to_server.ppp == {"IPv4": 1}


@needs_captures
def test_xdp2_ipv6_outer_ipv4_gre_with_seq_and_ack():
    pkts = list(reader.packets(cap("xdp2-gre-pptp.pcap")))
    first = pkts[0].gre
    assert (first.call_id, first.seq, first.ack, first.payload_length) == (6016, 430001, 539254, 103)
    assert not first.errors


@needs_captures
def test_plain_gre_is_not_a_pptp_session():
    report = pptp.analyze([cap("packetlife-GRE.cap")])
    assert report.sessions == [] and report.stats[str(cap("packetlife-GRE.cap"))]["gre_other"] == 10


@needs_captures
def test_chapcrack_gre_only_mschapv2_success_roles_from_ppp():
    (s,) = sessions("chapcrack-pptp.cap")
    assert s.gre_only and s.server == "198.252.153.26"
    call = s.calls[0]
    assert call.server_call_id == 46080
    assert call.ppp["auth_result"] == "success" and "M=Access granted" in call.ppp["auth_detail"]
    names = [e.detail for e in s.events if e.what in ("CHAP Challenge", "CHAP Response")]
    assert "name=pptpd" in names[0] and "name=moxie" in names[1]


@needs_captures
def test_pcapplusplus_only_v1_frames_are_pptp():
    report = pptp.analyze([cap("pcapplusplus-GrePackets.pcap")])
    stats = report.stats[str(cap("pcapplusplus-GrePackets.pcap"))]
    assert stats["gre_pptp"] == 3
    flows = [d for s in report.sessions for c in s.calls for d in (c.to_server, c.to_client) if d]
    assert sum(d.ack_only for d in flows) == 1
    assert any(e.what == "CCP Terminate-Ack" for s in report.sessions for e in s.events)


# ------------------------------------------------------------------ tshark oracle
GRE_FIELDS = ["checksum", "routing", "key", "sequence_number", "strict_source_route",
              "recursion_control", "ack", "reserved", "version"]
GRE_OURS = ["checksum", "routing", "key", "seq_present", "strict_route", "recursion", "ack_present",
            "flags", "version"]
PPTP_FIELDS = sorted({f for spec in control.MESSAGES.values() for f in spec[3] if not f.startswith("_")})
TSHARK_NAME = {"call_statistics": "call_Statistics"}  # Wireshark's one capitalised field


def tshark(path, display, fields):
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", display, "-T", "fields", "-E", "separator=|",
                          "-e", "frame.number", *[f"-e{f}" for f in fields]],
                         capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        cols = line.split("|")
        rows[int(cols[0])] = dict(zip(fields, cols[1:]))
    return rows


def num(text):
    return int(text, 0) if text.startswith("0x") else int(text)


def ours(path):
    gres, msgs, streams = {}, {}, {}
    for pkt in reader.packets(path):
        if pkt.kind == "gre" and pkt.gre.version == 1:
            gres[pkt.frame] = pkt.gre
        elif pkt.kind == "tcp":
            stream = streams.setdefault((pkt.src, pkt.sport), control.Stream())
            if pkt.flags & 0x02:
                stream.syn(pkt.seq)
            for raw in stream.feed(pkt.seq, pkt.data):
                msgs.setdefault(pkt.frame, []).append(control.decode(raw))
    return gres, msgs


def oracle_files(tmp_path):
    files = [g.full_session().write(tmp_path / "generated.pcap")]
    if CAPTURES.is_dir():
        files += sorted(p for p in CAPTURES.iterdir() if p.suffix in (".cap", ".pcap", ".pcapng"))
    return files


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed (make setup installs it)")
def test_oracle_every_pptp_and_gre_field_equals_tshark(tmp_path):
    checked = 0
    for path in oracle_files(tmp_path):
        gres, msgs = ours(path)
        t_gre = tshark(path, "gre.flags.version == 1",
                       [f"gre.flags.{f}" for f in GRE_FIELDS] +
                       ["gre.proto", "gre.key.payload_length", "gre.key.call_id", "gre.sequence_number",
                        "gre.ack_number", "ppp.protocol"])
        assert set(t_gre) == set(gres), f"{path.name}: GRE v1 frames differ"
        for frame, row in t_gre.items():
            mine = gres[frame]
            for tf, of in zip(GRE_FIELDS, GRE_OURS):
                assert num(row[f"gre.flags.{tf}"]) == int(getattr(mine, of)), f"{path.name} #{frame} {tf}"
            assert num(row["gre.proto"]) == mine.proto
            assert num(row["gre.key.payload_length"]) == mine.payload_length
            assert num(row["gre.key.call_id"]) == mine.call_id
            assert (num(row["gre.sequence_number"]) if row["gre.sequence_number"] else None) == mine.seq
            assert (num(row["gre.ack_number"]) if row["gre.ack_number"] else None) == mine.ack
            if row["ppp.protocol"]:
                assert num(row["ppp.protocol"].split(",")[0]) == ppp.decode(mine.payload).protocol
            checked += 1
        t_pptp = tshark(path, "pptp", ["pptp.control_message_type"] +
                        [f"pptp.{TSHARK_NAME.get(f, f)}" for f in PPTP_FIELDS])
        assert set(t_pptp) == set(msgs), f"{path.name}: PPTP frames differ"
        for frame, row in t_pptp.items():
            (m,) = msgs[frame]
            assert m.type == num(row["pptp.control_message_type"]) and not m.errors
            for k, v in m.fields.items():
                theirs = row[f"pptp.{TSHARK_NAME.get(k, k)}"]
                assert (theirs if isinstance(v, str) else num(theirs)) == v, f"{path.name} #{frame} {m.name}.{k}"
            checked += 1
    assert checked >= 35 + (35 if CAPTURES.is_dir() else 0)  # generated session; shared captures


# ------------------------------------------------------------------ fuzzing
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decoders_never_raise(data):
    g_ = gre.decode(data)
    if g_ is not None and g_.is_pptp:
        ppp.decode(g_.payload)
    ppp.decode(data)
    control.decode(data)
    s = control.Stream()
    s.feed(0, data)
    s.feed(len(data) // 2, data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=24, max_value=6000), flips=st.lists(
    st.tuples(st.integers(min_value=24, max_value=6000), st.integers(min_value=0, max_value=255)), max_size=20))
def test_fuzz_truncated_and_corrupted_captures_are_reported_not_raised(tmp_path, cut, flips):
    good = g.full_session().write(tmp_path / "good.pcap").read_bytes()
    data = bytearray(good[:cut])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(data))
    report = pptp.analyze([bad])  # must not raise; whatever survived is reported
    assert isinstance(report.to_dict(), dict)
