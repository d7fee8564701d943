"""The live event lines of `capture watch` (lab.live.events): a capture arriving in pieces
of any size, as a pipe delivers it, gives the same events, phase changes and losses."""
import random

from lab.up import live

from . import pptpgen as g


def chunks(data: bytes, seed: int):
    rnd = random.Random(seed)
    i = 0
    while i < len(data):
        n = rnd.randint(1, 300)
        yield data[i:i + n]
        i += n


def test_events_from_a_stream_in_pieces(tmp_path):
    cap = g.full_session()
    cap.gre("client", g.mppe_data(), seq=50)  # a gap in the client's sequence: counted as lost
    data = cap.write(tmp_path / "c.pcap").read_bytes()
    lines = list(live.events(chunks(data, 1), "lan"))
    assert lines == list(live.events(chunks(data, 2), "lan"))  # any split gives the same lines
    text = "\n".join(lines)
    for what in ("client: TCP SYN", "client: SCCRQ", "server: SCCRP", "client: OCRQ", "server: OCRP"):
        assert f"lan #1 {g.CLIENT} -> {g.SERVER} {what}" in text, text
    phases = [line.split(" phase ")[1].split(":")[0] for line in lines if " phase " in line]
    assert phases[0] == "tcp" and "data" in phases and phases[-1] == "teardown", phases
    assert any("GRE lost" in line for line in lines), text


def test_a_stream_cut_mid_record_ends_the_events_quietly(tmp_path):
    data = g.full_session().write(tmp_path / "c.pcap").read_bytes()
    whole = list(live.events(iter([data]), "lan"))
    cut = list(live.events(iter([data[:len(data) // 2 + 7]]), "lan"))  # +7: inside a record
    assert 0 < len(cut) < len(whole) and cut == whole[:len(cut)]
