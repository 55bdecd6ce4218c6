"""JSON for payloads and stored raw posts: orjson (several times faster than the standard
library at the two things ingest does most, decoding API pages and encoding each post's raw
payload for the database), falling back to the standard library where orjson is stricter.

orjson refuses what the standard library accepts: lone surrogates in strings (`"\\ud800"`, which
a hostile post can carry) and integers beyond 64 bits. Such input goes through `json` instead,
so that what was accepted before is accepted still.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def dumps(value: Any) -> str:
    """Compact JSON text (the database's JSON columns take text)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))
