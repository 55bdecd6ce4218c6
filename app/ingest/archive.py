"""Read archive files: JSON lines (twarc2 pages, stream messages, flattened tweets, Mastodon
statuses or tag timeline pages, Bluesky post views or searchPosts answers), one JSON document (a
pretty-printed response page or status, or a list of them), gzip-compressed or not.

Yields each object with its line number; a JSON list (a document, or on a line) gives its
items, each with the line it starts on. A line that is not JSON is reported with its file and
line number and skipped; a file that holds nothing readable raises `ArchiveError`. What the
objects are is for `app.ingest.payloads` to tell.
"""

from __future__ import annotations

import gzip
import json
import re
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
        # A list on one line (a Mastodon tag timeline page) may be longer than the head.
        first_line = _first_line(path) if head[:1] == b"[" else head.split(b"\n", 1)[0].strip()
        if first_line in (b"{", b"[") or (head[:1] == b"[" and not _is_json(first_line)):
            yield from _read_document(path, name, on_bytes)
            return
    yield from _read_lines(path, name, on_error, on_bytes)


def _first_line(path: Path) -> bytes:
    """The first line of the file that is not blank, whole, stripped."""
    with _open(path) as handle:
        for raw in handle:
            if raw.strip():
                return raw.strip()
    return b""


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
        text = raw.decode(json.detect_encoding(raw))
        if text.lstrip("\ufeff \t\r\n").startswith("["):
            entries = _list_items(text)
        else:
            entries = [Entry(1, json.loads(text))]
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ArchiveError(
            f"{name}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})"
        ) from exc
    yield from entries


_BLANK = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _list_items(text: str) -> list[Entry]:
    """The items of a JSON list document, each with the line it starts on; JSONDecodeError (as
    `json.loads` raises it) when the document is not valid JSON."""
    index = text.index("[") + 1
    line, counted = 1, 0
    entries: list[Entry] = []

    def skip(at: int) -> int:
        match = _BLANK.match(text, at)
        assert match is not None  # `*` matches the empty string
        return match.end()

    index = skip(index)
    if text.startswith("]", index):
        index += 1
    else:
        while True:
            line += text.count("\n", counted, index)
            counted = index
            item, index = _DECODER.raw_decode(text, index)
            entries.append(Entry(line, item))
            index = skip(index)
            if text.startswith(",", index):
                index = skip(index + 1)
                continue
            if text.startswith("]", index):
                index += 1
                break
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
    if skip(index) != len(text):
        raise json.JSONDecodeError("Extra data", text, skip(index))
    return entries


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
                # A list on a line (a tag timeline page, pages saved together): its items, as
                # a list document gives them.
                for item in obj if isinstance(obj, list) else [obj]:
                    yield Entry(number, item)
                continue
            if first_error is None:
                first_error = error
            on_error(error)
    if good == 0:
        if first_error is None:
            raise ArchiveError(f"{name}: the file holds only blank lines")
        raise ArchiveError(
            f"{name}: no line is JSON; this is not an archive of X, Mastodon or Bluesky posts "
            f"({first_error})"
        )
