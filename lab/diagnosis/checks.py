"""The checks of a topology's `expect:` block: one function per key, registered under the
key it checks. `pptp-lab test` gathers what they need (tunnel state, pings, the analysed
capture) and calls them; they only judge, so each has a unit test that needs no lab."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..model.topology import ClientExpect, NatExpect


@dataclass
class Check:
    name: str
    spec: str
    passed: bool
    detail: str = ""
    seconds: float = 0.0
    # The packet that shows why: {"capture": file name, "frame": number, "event": what}; the
    # report links it to that row of the session's ladder.
    where: dict = field(default_factory=dict)
    # Where a failing client's packet went and died (lab.diagnosis.why.path_data); the report draws it
    # on the topology picture. {}: nothing to draw.
    path: dict = field(default_factory=dict)


@dataclass
class ClientFacts:
    """What was observed of one client."""
    name: str
    ifname: str                # its tunnel interface (ppp0; ppp100 on a server that dials out)
    state: str                 # "up" | "down"
    session: object = None     # its latest analysed session (lab.pptp.Session) or None
    pings: dict[str, tuple[bool, str]] = field(default_factory=dict)  # address -> (answered, summary)
    # What dropped its packets, when the tunnel failed and was traced (lab.diagnosis.why.Drop: node,
    # family, table, chain, rule, handle, policy), and the sentence that says so.
    drop: object = None
    why: str = ""
    path: dict = field(default_factory=dict)  # the packet's way (lab.diagnosis.why.path_data)
    cause: object = None  # lab.diagnosis.cause.Cause, when the tunnel failed and was diagnosed
    # Data flow (SPEC S29-S31), when `expect` asks for a transfer: lab.up.dataflow.Transfer,
    # the DF searches {"to_server": DfSearch, "to_client": DfSearch}, and the cause of a
    # transfer that did not complete (lab.diagnosis.cause.Cause).
    transfer: object = None
    df: dict = field(default_factory=dict)
    transfer_cause: object = None


CLIENT: dict[str, Callable[[ClientFacts, ClientExpect], list[Check]]] = {}
NAT: dict[str, Callable[[str, NatExpect, list[int]], list[Check]]] = {}


def _register(table: dict, *keys: str):
    def add(fn):
        for key in keys:
            table[key] = fn
        return fn
    return add


def evidence(session, event=None) -> dict:
    """Where a session shows how it went: `event` if given, else its last event before the
    teardown began (a stuck handshake's last request, a CHAP Failure)."""
    events = getattr(session, "events", None)
    if not events:
        return {}
    if event is None:
        torn = {id(e) for e in session.teardown}
        first_torn = next((i for i, e in enumerate(events) if id(e) in torn), len(events))
        event = events[max(first_torn - 1, 0)]
    return {"capture": Path(session.source).name, "frame": event.frame, "event": event.what}


def _why(f: ClientFacts) -> str:
    s = f.session
    said = f"analyser: phase {s.phase}: {s.verdict}" if s else "analyser: no session in the capture"
    return said + (f"; {f.why}" if f.why else "")


@_register(CLIENT, "tunnel", "phase")
def tunnel(f: ClientFacts, want: ClientExpect) -> list[Check]:
    """tunnel: up (the interface has an address), or fails [at the phase the analyser found
    the session stopped in]."""
    where = evidence(f.session)
    if want.tunnel == "up":
        up = f.state == "up"
        return [Check(f"{f.name}: tunnel up", "S16", up,
                      f"{f.ifname} up" if up else f"no tunnel on {f.ifname}; {_why(f)}", where=where,
                      path={} if up else f.path)]
    ok = f.state != "up" and (want.phase is None or (f.session is not None and f.session.phase == want.phase))
    return [Check(f"{f.name}: tunnel fails" + (f" at {want.phase}" if want.phase else ""), "S16", ok,
                  f"{f.ifname} {f.state}; {_why(f)}", where=where, path={} if ok else f.path)]


@_register(CLIENT, "reach")
def reach(f: ClientFacts, want: ClientExpect) -> list[Check]:
    out = []
    for addr in want.reach:
        answered, summary = f.pings.get(addr, (False, "not pinged"))
        out.append(Check(f"{f.name}: reaches {addr}", "", answered, summary))
    return out


@_register(CLIENT, "unreachable")
def unreachable(f: ClientFacts, want: ClientExpect) -> list[Check]:
    out = []
    for addr in want.unreachable:
        answered, _ = f.pings.get(addr, (True, ""))  # not pinged counts as a failure, never a pass
        out.append(Check(f"{f.name}: does not reach {addr}", "", not answered,
                         "answered" if answered else "no answer"))
    return out


@_register(CLIENT, "dropped_by", "rule")
def dropped_by(f: ClientFacts, want: ClientExpect) -> list[Check]:
    """dropped_by: NODE [rule: SUBSTRING]: kernel tracing found NODE's ruleset dropping the
    client's packets (by a rule containing SUBSTRING, when given)."""
    if want.dropped_by is None:
        return []
    d = f.drop
    ok = d is not None and d.node == want.dropped_by and (want.rule is None or want.rule in (d.rule or ""))
    name = f"{f.name}: dropped by {want.dropped_by}" + (f" (rule with `{want.rule}`)" if want.rule else "")
    detail = f.why or ("no traced drop" if d is None else f"dropped by {d.node}, {d.where()}")
    return [Check(name, "S22", ok, detail, where=evidence(f.session), path=f.path)]


@_register(CLIENT, "cause")
def cause(f: ClientFacts, want: ClientExpect) -> list[Check]:
    """cause: C: the failure's cause (lab.diagnosis.cause) is C, decided from the evidence."""
    if want.cause is None:
        return []
    got = f.cause.name if f.cause is not None else None
    detail = f.cause.line() if f.cause is not None else "no cause decided (the tunnel came up, or was not diagnosed)"
    return [Check(f"{f.name}: fails for cause {want.cause}", "S32", got == want.cause, detail,
                  where=evidence(f.session), path=f.path)]


@_register(CLIENT, "transfer")
def transfer(f: ClientFacts, want: ClientExpect) -> list[Check]:
    """transfer: {to, bytes[, min_mtu]}: every byte arrived intact (S30); with min_mtu, a
    packet that size passed the tunnel with DF set each way (S29)."""
    move = want.transfer
    if move is None:
        return []
    t = f.transfer
    detail = t.summary() if t is not None else "no transfer: the tunnel was not up"
    if t is not None and not t.complete and f.transfer_cause is not None:
        detail += "; " + f.transfer_cause.line()
    out = [Check(f"{f.name}: {move.bytes} bytes to {move.to}", "S30", t is not None and t.complete, detail)]
    if move.min_mtu is not None:
        sizes = {way: getattr(f.df.get(way), "largest", None) for way in ("to_server", "to_client")}
        ok = all(v is not None and v >= move.min_mtu for v in sizes.values())
        shown = ", ".join(f"{way.replace('_', ' ')}: {v if v is not None else 'none'}" for way, v in sizes.items())
        out.append(Check(f"{f.name}: packets of {move.min_mtu} bytes pass with DF set", "S29", ok,
                         f"largest with DF set {shown}"))
    return out


@_register(NAT, "unique_outside_call_ids")
def unique_outside_call_ids(name: str, want: NatExpect, outside_ids: list[int]) -> list[Check]:
    """The call IDs seen on the NAT's outside segment (of answered calls) are all different."""
    if not want.unique_outside_call_ids:
        return []
    unique = bool(outside_ids) and len(outside_ids) == len(set(outside_ids))
    return [Check(f"{name}: unique outside call IDs", "S20", unique, f"outside call IDs {outside_ids}")]


def client_checks(facts: ClientFacts, want: ClientExpect | None) -> list[Check]:
    """Every registered check of one client (a client with no `expect:` must get its tunnel)."""
    want = want or ClientExpect()
    return [c for fn in dict.fromkeys(CLIENT.values()) for c in fn(facts, want)]


def nat_checks(name: str, want: NatExpect, outside_ids: list[int]) -> list[Check]:
    return [c for fn in dict.fromkeys(NAT.values()) for c in fn(name, want, outside_ids)]
