"""Read archive files: JSON lines (twarc2 pages, stream messages, flattened tweets), one JSON
document (a pretty-printed response page, or a list of them), gzip-compressed or not.

Yields each object with its line number. A line that is not JSON is reported with its file and
line number and skipped; a file that holds nothing readable raises `ArchiveError`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app.errors import ArchiveError


@dataclass(frozen=True, slots=True)
class LineError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Entry:
    line: int
    obj: Any


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]
    return path.open("rb")


def file_size(path: Path) -> int:
    return path.stat().st_size


def read_archive(
    path: Path,
    on_error: Callable[[LineError], None],
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Entry]:
    """The JSON objects of one archive file, in file order."""
    name = str(path)
    if not path.exists():
        raise ArchiveError(f"{name}: no such file")
    if path.is_dir():
        raise ArchiveError(f"{name}: is a folder, not an archive file")
    try:
        with _open(path) as handle:
            head = handle.read(4096).lstrip()
    except OSError as exc:
        raise ArchiveError(f"{name}: cannot be read ({exc})") from exc
    if not head:
        raise ArchiveError(f"{name}: the file is empty")
    if head.startswith(b"\x1f\x8b"):
        raise ArchiveError(f"{name}: is gzip-compressed; name it *.gz to import it")
    if head[:1] in (b"{", b"["):
        first_line = head.split(b"\n", 1)[0].strip()
        if first_line in (b"{", b"[") or (head[:1] == b"[" and not _is_json(first_line)):
            yield from _read_document(path, name, on_bytes)
            return
    yield from _read_lines(path, name, on_error, on_bytes)


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def _read_document(
    path: Path, name: str, on_bytes: Callable[[int], None] | None
) -> Iterator[Entry]:
    with _open(path) as handle:
        raw = handle.read()
    if on_bytes:
        on_bytes(len(raw))
    try:
        document = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ArchiveError(
            f"{name}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})"
        ) from exc
    if isinstance(document, list):
        for item in document:
            yield Entry(1, item)
    else:
        yield Entry(1, document)


def _read_lines(
    path: Path,
    name: str,
    on_error: Callable[[LineError], None],
    on_bytes: Callable[[int], None] | None,
) -> Iterator[Entry]:
    good = 0
    first_error: LineError | None = None
    with _open(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if on_bytes:
                on_bytes(len(raw))
            stripped = raw.strip()
            if not stripped:
                continue  # keep-alive newlines of the stream, blank lines
            try:
                obj = json.loads(stripped)
            except UnicodeDecodeError as exc:
                error = LineError(name, number, f"not UTF-8 text ({exc.reason})")
            except json.JSONDecodeError as exc:
                hint = " (the line is cut short)" if not raw.endswith(b"\n") else ""
                error = LineError(
                    name, number, f"not valid JSON: {exc.msg} at column {exc.colno}{hint}"
                )
            else:
                good += 1
                yield Entry(number, obj)
                continue
            if first_error is None:
                first_error = error
            on_error(error)
    if good == 0:
        if first_error is None:
            raise ArchiveError(f"{name}: the file holds only blank lines")
        raise ArchiveError(
            f"{name}: no line is JSON; this is not an X API v2 archive ({first_error})"
        )
