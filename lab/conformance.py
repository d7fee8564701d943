"""What the reference documents next to what the lab observes (SPEC: report both, assert
what real software does). Used by the scenario tests and the reports."""
from __future__ import annotations

# SPEC S10, in the reference's order: (sender, step).
DOCUMENTED_CLIENT_TEARDOWN = [
    ("client", "SLI"), ("client", "LCP Terminate-Request"), ("server", "SLI"),
    ("server", "LCP Terminate-Ack"), ("client", "CCRQ"), ("server", "CDN"),
    ("client", "StopCCRQ"), ("server", "StopCCRP"), ("client", "TCP FIN"),
]


def swap(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The same exchange with the roles swapped (SPEC S11)."""
    other = {"client": "server", "server": "client"}
    return [(other[who], what) for who, what in steps]


DOCUMENTED_SERVER_TEARDOWN = swap(DOCUMENTED_CLIENT_TEARDOWN)


def observed(session) -> list[tuple[str, str]]:
    return [(e.sender, e.what) for e in session.teardown]


def compare(documented: list[tuple[str, str]], seen: list[tuple[str, str]]) -> dict:
    """Steps in both, only documented (skipped by the real software), only observed."""
    return {"documented": [f"{w} ({s})" for s, w in documented],
            "observed": [f"{w} ({s})" for s, w in seen],
            "skipped": [f"{w} ({s})" for s, w in documented if (s, w) not in seen],
            "extra": [f"{w} ({s})" for s, w in seen if (s, w) not in documented]}
