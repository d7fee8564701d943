"""`fn` over items from a few threads: what the engine and the lab steps do at once."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def parallel(fn, items, workers: int = 16) -> list:
    """[fn(item) ...] in the items' order, at most `workers` at a time."""
    items = list(items)
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)))
    try:
        return list(pool.map(fn, items))
    finally:
        # On Ctrl-C or a failure the items not started are dropped: what runs is waited for.
        pool.shutdown(wait=True, cancel_futures=True)
