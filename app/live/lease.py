"""Which process collects a chat: exactly one at a time.

On PostgreSQL a chat's collector holds a session-level advisory lock (`pg_try_advisory_lock`) on
a connection kept open for the purpose. When the process dies its connection closes and the lock
is free at once; the other processes try every `LEASE_RETRY` seconds, so one of them takes over
within a few seconds and resumes from the positions stored with the posts. A process that loses
its lock connection stops collecting at once (it can no longer be sure it is the only one).

On SQLite there is one process: `LocalLeases` grants every lease.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

LEASE_RETRY = 1.0  # seconds between attempts on a chat another process collects


def lock_key(slug: str) -> int:
    """A stable signed 64-bit key for the chat's advisory lock."""
    digest = hashlib.blake2b(f"tweetchat:collect:{slug}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LocalLeases:
    shared = False

    def __init__(self) -> None:
        self._held: set[str] = set()

    async def acquire(self, slug: str) -> bool:
        self._held.add(slug)
        return True

    async def release(self, slug: str) -> None:
        self._held.discard(slug)

    async def alive(self) -> bool:
        return True

    def held(self) -> set[str]:
        return set(self._held)

    async def close(self) -> None:
        self._held.clear()


class PostgresLeases:
    """Advisory locks on one dedicated connection (psycopg's async connection)."""

    shared = True

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._conn: Any = None
        self._held: set[str] = set()
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            self._held.clear()  # a new connection holds no lock
            self._conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        return self._conn

    async def acquire(self, slug: str) -> bool:
        async with self._lock:
            if slug in self._held:
                return True
            try:
                conn = await self._connection()
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(slug),))
                row = await cursor.fetchone()
            except Exception as exc:
                log.warning("could not ask for the lease on %s: %s", slug, exc)
                await self._drop()
                return False
            if row and row[0]:
                self._held.add(slug)
                log.info("this process now collects %s", slug)
                return True
            return False

    async def release(self, slug: str) -> None:
        async with self._lock:
            if slug not in self._held:
                return
            self._held.discard(slug)
            try:
                await self._conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(slug),))
            except Exception:
                await self._drop()

    async def alive(self) -> bool:
        """Whether the locks are still held (their connection answers)."""
        async with self._lock:
            if not self._held:
                return True
            try:
                await self._conn.execute("SELECT 1")
                return True
            except Exception as exc:
                log.error("lost the connection that holds the collect leases: %s", exc)
                await self._drop()
                return False

    async def _drop(self) -> None:
        self._held.clear()
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:
                log.debug("closing a broken lease connection failed", exc_info=True)
        self._conn = None

    def held(self) -> set[str]:
        return set(self._held)

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


Leases = LocalLeases | PostgresLeases


def make_leases(database_url: str) -> Leases:
    backend = make_url(database_url).get_backend_name()
    return PostgresLeases(database_url) if backend == "postgresql" else LocalLeases()
