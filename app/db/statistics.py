"""Keep PostgreSQL's planner statistics in step with a chat that grows fast.

The store looks posts up by `network = ? AND id = ANY(?)`. Without statistics (a fresh database,
or one that grew tenfold since autovacuum last looked, which waits a minute between rounds)
PostgreSQL plans those lookups as a scan of every post of the network, filtered by the array:
34 ms per 1,000 ids in a 300,000-post table instead of 1.5 ms (docs/benchmarks.md). A writer that
knows how much it added analyzes the tables itself as they double. SQLite is left alone: its
planner uses the primary key without statistics.

The first ANALYZE comes early (`FIRST` rows): with none, even a chat of a few hundred posts gets
plans built on guesses of one row per table, and the unanswered count of `app.stats` (nested
NOT EXISTS over replies and copies) took 5 s for a 400-post chat (tests/test_three_networks.py
timed out on it) against 0.2 s once analyzed. ANALYZE of a small table takes milliseconds.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

# The tables the ingest lookups read, analyzed together.
TABLES = "posts, chat_posts, accounts"
FIRST = 200  # rows written before the first ANALYZE


class Statistics:
    """Counts the rows one writer adds; analyzes once they reach `FIRST`, then each time they
    double what they were at the last ANALYZE (~log2(n) analyzes for n rows)."""

    def __init__(self, first: int = FIRST) -> None:
        self.written = 0
        self.next_at = first
        self.analyzes = 0

    def grew(self, session: Session, rows: int) -> bool:
        """Note `rows` more rows written in `session`; analyze (in its transaction) when due.
        Returns whether it analyzed."""
        if session.get_bind().dialect.name != "postgresql":
            return False
        self.written += rows
        if self.written < self.next_at:
            return False
        session.execute(text(f"ANALYZE {TABLES}"))
        self.analyzes += 1
        self.next_at = self.written * 2
        return True
