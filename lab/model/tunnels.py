"""What the live capture shows of each client's tunnel, for `pptp-lab status`: its age, the
last echo, GRE each way and the losses so far, and whether a tunnel pppd calls up still
carries anything ("stalled": the client's GRE gets nothing back, e.g. a NAT that lost its
state). Built from one analysis of the capture (lab.pptp sessions) and the capture's clock."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

# Seconds a client's GRE payload may go without any GRE back before its tunnel is "stalled".
# Peers ack data within about 0.5 s (pptp-linux, pptpd), so 10 s is no slow answer but none.
STALL = 10.0


@dataclass
class Tunnel:
    """One client's latest call as one capture segment saw it; the fields are NodeStatus's."""
    seen_on: str                    # the capture segment
    call_ids: str                   # "client/server"
    age_s: float | None             # since the Outgoing-Call-Reply (else the session's start)
    last_echo_s: float | None       # since the last PPTP Echo or LCP Echo, either way
    last_echo: str                  # which: "LCP Echo-Reply from server"
    gre_out: int                    # GRE packets client -> server
    gre_in: int                     # GRE packets server -> client
    lost_out: int                   # sequence gaps never filled, each way (Direction.lost)
    lost_in: int
    last_gre_in_s: float | None     # since the server's last GRE packet
    unanswered_s: float | None      # the client's GRE payload has had no GRE back for this long
    mru: str = ""                   # "client/server": the MRU each side asked for, as LCP acked it (S29)
    outer: str = ""                 # "out/in": the largest outer GRE packet each way on this segment


def _since(now: float, ts: float | None) -> float | None:
    # A packet copied after `now` was read (the snapshot follows the clock) is "just now".
    return None if ts is None else round(max(0.0, now - ts), 1)


def _latest(s):
    """The session's last call the server answered, or None."""
    calls = [c for c in s.calls if c.server_call_id is not None]
    return calls[-1] if calls else None


def summarise(sessions, now: float) -> dict[str, list[Tunnel]]:
    """Client address -> its latest tunnel on each capture segment that saw it; `now` on the
    capture's clock (the engine's)."""
    best: dict[tuple[str, str], tuple[float, Tunnel]] = {}
    for s in sessions:
        call = _latest(s)
        if call is None:
            continue
        start = call.reply_ts if call.reply_ts is not None else s.start
        key = (s.client, Path(s.source).stem)
        if key in best and best[key][0] > start:
            continue  # an older call of a client that dialled again
        out, back = call.to_server, call.to_client
        echoes = [e for e in (s.last_echo, call.lcp_echo) if e]
        echo = max(echoes, key=lambda e: e["ts"]) if echoes else None
        best[key] = (start, Tunnel(
            seen_on=key[1], call_ids=f"{call.client_call_id}/{call.server_call_id}",
            age_s=_since(now, start), last_echo_s=_since(now, echo and echo["ts"]),
            last_echo=f"{echo['what']} from {echo['sender']}" if echo else "",
            gre_out=out.packets if out else 0, gre_in=back.packets if back else 0,
            lost_out=out.lost if out else 0, lost_in=back.lost if back else 0,
            last_gre_in_s=_since(now, back and back.last_ts),
            unanswered_s=_since(now, call.waiting["client"]),
            mru="/".join(str(call.ppp["mru"][k] or "?") for k in ("client", "server")) if any(call.ppp["mru"].values()) else "",
            outer=f"{out.largest if out else 0}/{back.largest if back else 0}" if out or back else ""))
    found: dict[str, list[Tunnel]] = {}
    for (client, _), (_, t) in sorted(best.items()):
        found.setdefault(client, []).append(t)
    return found


def nearest(found: dict[str, list[Tunnel]], addresses: dict[str, str]) -> Tunnel | None:
    """The tunnel of a node with these addresses (network -> address): as seen on the node's
    own segment when a capture there has it (before any NAT or firewall on the way)."""
    for net, addr in addresses.items():
        for t in found.get(addr, []):
            if t.seen_on == net:
                return t
    return next((found[a][0] for a in addresses.values() if a in found), None)


def state(pppd: str, unanswered_s: float | None, stall: float = STALL) -> str:
    """pppd's word ("up" or "down"), or "stalled" when pppd has its address but the client's
    GRE has gone unanswered for `stall` seconds. An idle tunnel (nothing sent, or the last
    packet answered) stays up: only traffic the server never answers is a stall."""
    if pppd == "up" and unanswered_s is not None and unanswered_s >= stall:
        return "stalled"
    return pppd


def ago(seconds: float | None) -> str:
    """12s, 5m02s, 3h07m, 2d05h: short enough for a narrow column."""
    if seconds is None:
        return ""
    s = int(seconds)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit}{(s % size) // subsize:02d}{sub}"
    return f"{s}s"


def fill(st, t: Tunnel | None) -> None:
    """Put a client's tunnel figures into its NodeStatus (st.tunnel holds pppd's word)."""
    if t is None:
        return
    for k, v in asdict(t).items():
        setattr(st, k, v)
    st.tunnel = state(st.tunnel, t.unanswered_s)
