"""Data through a live tunnel (SPEC S29, S30): the largest packet that passes each way with
DF set, found by a search with real pings, and a TCP transfer of a fixed number of bytes
(socat), checked at the far end by its size and SHA-256.

The scripts are fixed text: addresses and numbers reach them as argv words only."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ..core.errors import LabError
from ..engines import Engine

PORT = 5201
SEND, RECV = "/tmp/pptp-lab-send", "/tmp/pptp-lab-recv"
ICMP_HEADERS = 28  # IPv4 + ICMP echo: a ping of payload s is a packet of s + 28 octets
LARGEST = 1500

# A binary search over ICMP payload sizes: lo passes, hi fails. A size passes when one of
# two pings is answered; a failing size is tried once more before it counts (a lost packet
# can hold the next ones back for a moment: the peer's GRE reordering, MPPE's resync). A size
# the sender's own interface cannot take fails at once (EMSGSIZE); one that dies on the path
# costs about 3 s. So hi starts at what the route's interface takes, and the largest size
# that interface takes is tried first: on a tunnel whose path carries it, one probe.
# A guest starved of CPU for seconds loses every ping meanwhile (a suite run once found 1062
# where 1359 passes): at the end the smallest size that failed is tried again, and when it
# passes now, the search goes on above it (twice at most); the smallest size gets a second
# chance too before the answer is "none".
DF_SEARCH = r'''
addr=$1 lo=$2 hi=$3
probe() {
  ping -n -M do -c 2 -i 0.2 -W 1 -s "$1" "$addr" >/dev/null 2>&1 && return 0
  sleep 0.5
  ping -n -M do -c 2 -i 0.2 -W 1 -s "$1" "$addr" >/dev/null 2>&1
}
dev=$(ip -o route get "$addr" 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p')
mtu=$(cat "/sys/class/net/$dev/mtu" 2>/dev/null)
case "$mtu" in ''|*[!0-9]*) ;; *) [ $((mtu - 27)) -lt "$hi" ] && [ $((mtu - 27)) -gt "$lo" ] && hi=$((mtu - 27)) ;; esac
top=$hi
probe "$lo" || { sleep 2; probe "$lo"; } || { echo none; exit 0; }
if [ $((hi - lo)) -gt 1 ]; then
  probe $((hi - 1)) && { echo $((hi - 1)); exit 0; }
  hi=$((hi - 1))
fi
again=2
while :; do
  while [ $((hi - lo)) -gt 1 ]; do
    mid=$(((lo + hi) / 2))
    if probe "$mid"; then lo=$mid; else hi=$mid; fi
  done
  [ "$again" -gt 0 ] && [ "$hi" -lt "$top" ] && probe "$hi" || break
  again=$((again - 1)) lo=$hi hi=$top
done
echo "$lo"
'''

# The far end: one connection, written to a file; the time its end of file came is written
# beside it. Everything runs in the background (the exec returns once it listens).
LISTEN = r'''
port=$1 secs=$2 out=$3
rm -f "$out" "$out.done"
(timeout "$secs" socat -u TCP-LISTEN:"$port",reuseaddr CREATE:"$out"; date +%s.%N > "$out.done") >/dev/null 2>&1 &
i=0
while [ $i -lt 50 ]; do
  ss -Hltn "sport = :$port" | grep -q . && exit 0
  i=$((i + 1)); sleep 0.1
done
echo "nothing listens on $port" >&2; exit 1
'''

# The sender: N random bytes, their SHA-256, the kernel's TCP retransmission counter before
# and after (this node's own namespace), and when it started.
SEND_SCRIPT = r'''
addr=$1 port=$2 bytes=$3 secs=$4 file=$5
head -c "$bytes" /dev/urandom > "$file"
set -- $(sha256sum "$file"); sum=$1
retrans() { awk '/^Tcp:/ && n++ { print $13 }' /proc/net/snmp; }
r0=$(retrans)
echo "start $(date +%s.%N)"
timeout "$secs" socat -u FILE:"$file" TCP:"$addr":"$port",connect-timeout=5
echo "rc $?"
echo "retrans $(($(retrans) - r0))"
echo "sha256 $sum"
rm -f "$file"
'''

# The far end once the sender is done: wait (up to secs) for the end of file, then report.
RESULT = r'''
out=$1 secs=$2
i=0
while [ ! -f "$out.done" ] && [ $i -lt $((secs * 5)) ]; do i=$((i + 1)); sleep 0.2; done
# The end: the last byte's arrival, the file's own time (the listener's exit may lag or not come).
echo "done $(date -r "$out" +%s.%N 2>/dev/null || echo none)"
echo "bytes $(stat -c %s "$out" 2>/dev/null || echo 0)"
set -- $(sha256sum "$out" 2>/dev/null || echo none); echo "sha256 $1"
pkill -f "socat -u TCP-LISTEN" >/dev/null 2>&1
rm -f "$out" "$out.done"
'''


@dataclass
class Transfer:
    """One TCP transfer through a tunnel (SPEC S30)."""
    sender: str
    receiver: str
    to: str
    bytes: int                      # asked for
    received: int = 0               # at the far end
    intact: bool = False            # all of it, with the sender's SHA-256
    seconds: float | None = None    # sender's start to the far end's end of file
    retransmits: int | None = None  # the sender's TCP RetransSegs during the transfer
    stalled: bool = False           # the sender gave up after `timeout` seconds
    error: str = ""
    netem: str = ""                 # the loss or delay on the path meanwhile, when there was one

    @property
    def complete(self) -> bool:
        return self.intact and not self.error

    @property
    def mbit_s(self) -> float | None:
        return round(self.received * 8 / self.seconds / 1e6, 2) if self.seconds else None

    def summary(self) -> str:
        if self.complete:
            took = f" in {self.seconds:.2f} s ({self.mbit_s} Mbit/s)" if self.seconds is not None else ""
            return f"{self.received} bytes to {self.to} intact{took}, {self.retransmits} retransmitted segments"
        what = "stalled" if self.stalled else "failed"
        return (f"transfer to {self.to} {what}: {self.received} of {self.bytes} bytes arrived"
                + (f", {self.retransmits} retransmitted segments" if self.retransmits is not None else "")
                + (f" ({self.error})" if self.error else ""))

    def to_dict(self) -> dict:
        return {"sender": self.sender, "receiver": self.receiver, "to": self.to, "bytes": self.bytes,
                "received": self.received, "intact": self.intact, "seconds": self.seconds,
                "retransmits": self.retransmits, "stalled": self.stalled, "error": self.error,
                "mbit_s": self.mbit_s, "netem": self.netem, "complete": self.complete}


@dataclass
class DfSearch:
    """The largest packet (IP total length) that passed with DF set, one way; None: not even
    the smallest one tried."""
    sender: str
    to: str
    largest: int | None = None
    tried: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"sender": self.sender, "to": self.to, "largest": self.largest}


def _fields(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def df_search(eng: Engine, lab: str, node: str, to: str, smallest: int = 64, largest: int = LARGEST) -> DfSearch:
    """The largest packet with DF set that `node` gets through to `to`, from `smallest` up to
    `largest` octets (the sender's tunnel MTU: bigger ones cannot leave it)."""
    addr = str(ipaddress.IPv4Address(to))
    lo, hi = int(smallest) - ICMP_HEADERS, int(largest) - ICMP_HEADERS + 1
    r = eng.exec(eng.node(lab, node), ["sh", "-c", DF_SEARCH, "sh", addr, str(lo), str(hi)], check=False)
    word = r.out.strip().splitlines()[-1] if r.out.strip() else ""
    return DfSearch(node, addr, int(word) + ICMP_HEADERS if word.isdigit() else None)


def link_mtu(eng: Engine, lab: str, node: str, ifname: str) -> int | None:
    """The MTU of a node's interface (its tunnel's: what pppd set from the negotiation);
    None when it has no such interface (any more)."""
    r = eng.exec(eng.node(lab, node), ["ip", "-o", "link", "show", "dev", ifname], check=False)
    m = re.search(r" mtu (\d+) ", r.out) if r.ok else None
    return int(m[1]) if m else None


def transfer(eng: Engine, lab: str, sender: str, receiver: str, to: str, nbytes: int,
             timeout: float = 30) -> Transfer:
    """Send `nbytes` random bytes from `sender` to `to` (held by node `receiver`) over TCP;
    `timeout` seconds at most. A transfer that does not finish is reported, never raised."""
    addr = str(ipaddress.IPv4Address(to))
    n, secs = int(nbytes), max(1, int(timeout))
    res = Transfer(sender, receiver, addr, n)
    far, near = eng.node(lab, receiver), eng.node(lab, sender)
    r = eng.exec(far, ["sh", "-c", LISTEN, "sh", str(PORT), str(secs + 10), RECV], check=False)
    if not r.ok:
        raise LabError(f"{receiver}: could not listen for the transfer: {r.out.strip()[-200:]}")
    sent = _fields(eng.exec(near, ["sh", "-c", SEND_SCRIPT, "sh", addr, str(PORT), str(n), str(secs), SEND],
                            check=False).out)
    rc = int(sent.get("rc", "-1")) if sent.get("rc", "").lstrip("-").isdigit() else -1
    # After a good send the far end may still be reading; after a failed one it is not coming.
    got = _fields(eng.exec(far, ["sh", "-c", RESULT, "sh", RECV, "10" if rc == 0 else "1"], check=False).out)
    res.stalled = rc == 124
    res.error = "" if rc == 0 else "timed out" if rc == 124 else f"socat exit {rc}"
    res.retransmits = int(sent["retrans"]) if sent.get("retrans", "").lstrip("-").isdigit() else None
    res.received = int(got["bytes"]) if got.get("bytes", "").isdigit() else 0
    res.intact = res.received == n and got.get("sha256") == sent.get("sha256")
    try:  # nothing arrived: the file's time is its creation, no transfer time
        res.seconds = round(float(got["done"]) - float(sent["start"]), 3) if res.received else None
    except (KeyError, ValueError):
        res.seconds = None
    if rc == 0 and not res.intact and not res.error:
        res.error = f"{res.received} of {n} bytes arrived" if res.received != n else "the far end's SHA-256 differs"
    return res

