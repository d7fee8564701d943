"""PPP frames inside PPTP's GRE: LCP, PAP, CHAP (incl. MS-CHAPv2), CCP, IPCP, IPV6CP, data.

Handles frames with and without the FF 03 address/control octets and with 1-octet
(compressed) protocol fields, which scapy does and dpkt does not; CCP's MPPE option and
MS-CHAPv2 messages are decoded by neither, so they are here."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

PROTOCOLS = {0xC021: "LCP", 0xC023: "PAP", 0xC223: "CHAP", 0x80FD: "CCP", 0x80FB: "CCP",
             0x8021: "IPCP", 0x8057: "IPV6CP", 0x00FD: "MPPE", 0x00FB: "MPPE",
             0x0021: "IPv4", 0x0057: "IPv6", 0xC025: "LQR"}
CONTROL = {"LCP", "CCP", "IPCP", "IPV6CP"}
CODES = {1: "Configure-Request", 2: "Configure-Ack", 3: "Configure-Nak", 4: "Configure-Reject",
         5: "Terminate-Request", 6: "Terminate-Ack", 7: "Code-Reject", 8: "Protocol-Reject",
         9: "Echo-Request", 10: "Echo-Reply", 11: "Discard-Request", 12: "Identification",
         13: "Time-Remaining", 14: "Reset-Request", 15: "Reset-Ack"}
CHAP_CODES = {1: "Challenge", 2: "Response", 3: "Success", 4: "Failure"}
PAP_CODES = {1: "Authenticate-Request", 2: "Authenticate-Ack", 3: "Authenticate-Nak"}
CHAP_ALGORITHMS = {5: "MD5", 0x80: "MS-CHAP", 0x81: "MS-CHAPv2"}
MPPE_PREFIXES = (b"\x00\xfd", b"\xfd", b"\xff\x03\x00\xfd")  # PPP protocol 0x00FD, any framing
MSCHAP_ERRORS = {646: "restricted logon hours", 647: "account disabled", 648: "password expired",
                 649: "no dial-in permission", 691: "authentication failure (bad credentials)",
                 709: "error changing password"}


@dataclass(slots=True)
class Ppp:
    protocol: int
    name: str
    code: int | None = None
    code_name: str = ""
    ident: int | None = None
    options: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return f"{self.name} {self.code_name}".strip()


def _options(proto: str, data: bytes, errors: list[str]) -> dict:
    opts: dict = {}
    i = 0
    while i + 2 <= len(data):
        t, ln = data[i], data[i + 1]
        if ln < 2 or i + ln > len(data):
            errors.append(f"{proto} option {t} length {ln} overruns the packet")
            break
        v = data[i + 2:i + ln]
        i += ln
        if proto == "LCP":
            if t == 1 and len(v) == 2:
                opts["mru"] = int.from_bytes(v, "big")
            elif t == 2 and len(v) == 4:
                opts["accm"] = f"0x{int.from_bytes(v, 'big'):08x}"
            elif t == 3 and len(v) >= 2:
                auth = int.from_bytes(v[:2], "big")
                if auth == 0xC023:
                    opts["auth"] = "PAP"
                elif auth == 0xC223 and len(v) > 2:
                    opts["auth"] = "CHAP-" + CHAP_ALGORITHMS.get(v[2], f"alg{v[2]}")
                else:
                    opts["auth"] = f"0x{auth:04x}"
            elif t == 5 and len(v) == 4:
                opts["magic"] = f"0x{int.from_bytes(v, 'big'):08x}"
            elif t == 7:
                opts["pfc"] = True
            elif t == 8:
                opts["acfc"] = True
            else:
                opts[f"opt{t}"] = v.hex()
        elif proto == "IPCP":
            if t in (3, 129, 130, 131, 132) and len(v) == 4:
                key = {3: "address", 129: "dns1", 130: "nbns1", 131: "dns2", 132: "nbns2"}[t]
                opts[key] = str(ipaddress.IPv4Address(v))
            elif t == 2:
                opts["compression"] = v.hex()
            else:
                opts[f"opt{t}"] = v.hex()
        elif proto == "CCP":
            if t == 18 and len(v) == 4:
                bits = int.from_bytes(v, "big")
                opts["mppe"] = {"stateless": bool(bits & 0x01000000), "128": bool(bits & 0x40),
                                "56": bool(bits & 0x80), "40": bool(bits & 0x20),
                                "mppc": bool(bits & 0x01), "bits": f"0x{bits:08x}"}
            else:
                opts[{17: "stac", 21: "bsd", 24: "deflate", 26: "deflate"}.get(t, f"opt{t}")] = v.hex()
        else:
            opts[f"opt{t}"] = v.hex()
    return opts


def _chap(p: Ppp, body: bytes) -> None:
    if p.code in (1, 2) and body:
        size = body[0]
        p.info["value_size"] = size
        p.info["name"] = body[1 + size:].decode("latin-1", "replace")
        if p.code == 2 and size == 49:
            p.info["mschapv2"] = True
    elif p.code in (3, 4):
        msg = body.decode("latin-1", "replace")
        p.info["message"] = msg
        m = re.search(r"E=(\d+)", msg)
        if p.code == 4 and m:
            err = int(m.group(1))
            p.info["error"] = err
            p.info["meaning"] = MSCHAP_ERRORS.get(err, "unknown error")


def _pap(p: Ppp, body: bytes) -> None:
    if p.code == 1 and body:
        p.info["peer_id"] = body[1:1 + body[0]].decode("latin-1", "replace")  # password not kept
    elif p.code in (2, 3) and body:
        p.info["message"] = body[1:1 + body[0]].decode("latin-1", "replace")


def decode(data: bytes) -> Ppp | None:
    """Decode a PPP frame (with or without FF 03). None for an empty payload. Never raises."""
    if not data:
        return None
    if data[:2] == b"\xff\x03":
        data = data[2:]
    if not data:
        return Ppp(0, "?", errors=["PPP frame with address/control octets only"])
    if data[0] & 1:  # protocol field compressed to one octet (PFC)
        proto, rest = data[0], data[1:]
    elif len(data) >= 2:
        proto, rest = int.from_bytes(data[:2], "big"), data[2:]
    else:
        return Ppp(0, "?", errors=["PPP protocol field truncated"])
    p = Ppp(proto, PROTOCOLS.get(proto, f"0x{proto:04x}"))
    if p.name not in CONTROL | {"CHAP", "PAP"}:
        p.info["length"] = len(rest)
        return p
    if len(rest) < 4:
        p.errors.append(f"{p.name} packet truncated ({len(rest)} octets)")
        return p
    p.code, p.ident = rest[0], rest[1]
    length = int.from_bytes(rest[2:4], "big")
    if length < 4 or length > len(rest):
        p.errors.append(f"{p.name} length {length} but {len(rest)} octets")
        length = len(rest)
    body = rest[4:length]
    table = CHAP_CODES if p.name == "CHAP" else PAP_CODES if p.name == "PAP" else CODES
    p.code_name = table.get(p.code, f"code-{p.code}")
    if p.name == "CHAP":
        _chap(p, body)
    elif p.name == "PAP":
        _pap(p, body)
    elif p.code in (1, 2, 3, 4):
        p.options = _options(p.name, body, p.errors)
    elif p.code in (5, 6) and body:
        p.info["data"] = body.decode("latin-1", "replace")
    elif p.code in (9, 10, 11) and len(body) >= 4:
        p.info["magic"] = f"0x{int.from_bytes(body[:4], 'big'):08x}"
    return p
