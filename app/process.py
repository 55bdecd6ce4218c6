"""Settings of the Python process itself for long, allocation-heavy work (serving, importing)."""

from __future__ import annotations

import gc

# Allocations between two young-generation collections (CPython's default: 700).
YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect less often, and never walk what is already loaded.

    Ingest makes many short-lived objects (a page of posts is a few thousand dicts and records)
    while the live figures keep many long-lived ones: at CPython's default thresholds the cyclic
    collector took about a third of a 200,000-post ingest, mostly re-walking objects that live
    as long as the process (docs/benchmarks.md). The modules and objects loaded so far are
    frozen (no collection looks at them again), and the young generation is collected every
    50,000 allocations instead of every 700. Reference counting still frees almost everything
    at once; only cycles wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
