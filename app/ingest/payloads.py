"""Tell which network an archive object comes from, and parse it: the one place that decides.

An archive line (or a JSON document, or an item of a JSON list) may hold, on any line:

- X API v2: a response page, a stream message or a single (flattened) tweet (`parse_object`);
- Mastodon: a Status entity, or a list of them (a tag timeline page, as
  `GET /api/v1/timelines/tag/:hashtag` answers);
- Bluesky: an `app.bsky.feed.defs#postView`, or an `app.bsky.feed.searchPosts` answer
  (`{"posts": [postView, ...], "cursor": ...}`; `getPosts` answers have the same shape).

`payload_kind` says which (X's shapes are checked first, so X archives read exactly as before);
`PayloadReader.read` parses one object of any kind into a `Parsed`, and `PayloadReader.finish`
gives what had to wait for the end of the import.

Every post of an object is collected, on every network, like the posts of an X page's `data`:
the archive is the user's choice. What a post only carries (a boosted, quoted or replied-to
status, a quoted Bluesky post) is context.

Mastodon statuses need two things a status does not always say itself:

- The domain of the server's local accounts, whose `acct` is a bare username: a handle is
  `user@domain`. It is taken from the `url` of each local account (its profile page,
  `https://mastodon.social/@qihour`), or failing that the status's own `url`/`uri`, or given
  (`mastodon_server`, the CLI's `--mastodon-server`), which wins: a server whose web address is
  not its handles' domain needs it. A status whose local accounts point at several hosts, or
  at none, is reported and skipped unless the server is given.
- The parent of a reply: `in_reply_to_id` is the server's local id, not the parent's uri. It is
  resolved among every status of the import (a tag timeline is newest first, so a reply comes
  before its parent): replies and quotes whose parent has not been read yet wait for `finish`.
  A parent that is in none of the files leaves the reply unlinked (still a reply), counted in
  `PayloadReader.unlinked`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from app.ingest.parse import Parsed, PayloadError, PostRecord, parse_object
from app.sources.bluesky import parse_post_view
from app.sources.mastodon import StatusReader

PayloadKind = Literal["x", "mastodon", "bluesky-post", "bluesky-search", "list"]

_X_PAGE_KEYS = ("data", "includes", "meta", "errors")


def payload_kind(obj: Any) -> PayloadKind:
    """Which kind of object `obj` is; PayloadError naming its keys when it is none of them."""
    if isinstance(obj, list):
        return "list"
    if not isinstance(obj, dict):
        raise PayloadError(f"expected a JSON object, found {type(obj).__name__}")
    if any(key in obj for key in _X_PAGE_KEYS):
        return "x"
    if isinstance(obj.get("posts"), list):
        return "bluesky-search"
    uri = obj.get("uri")
    if isinstance(uri, str) and uri.startswith("at://") and "record" in obj:
        return "bluesky-post"
    if "account" in obj and ("content" in obj or "reblog" in obj):
        return "mastodon"
    if "id" in obj and "text" in obj:
        return "x"
    keys = ", ".join(sorted(obj)[:8]) or "none"
    # The first words are what X archives have always been told; the rest names the others.
    raise PayloadError(
        f"not an X API v2 page, stream message or tweet (its keys: {keys}), "
        "nor a Mastodon status or a Bluesky post view or searchPosts answer"
    )


def _host(value: Any) -> str | None:
    if not isinstance(value, str) or "://" not in value:
        return None
    try:
        host = urlsplit(value.strip()).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def _is_local(account: Any) -> bool:
    """Whether a Mastodon account or mention is local to the server that rendered it: its
    `acct` is a bare username."""
    if not isinstance(account, Mapping):
        return False
    acct = account.get("acct")
    if not isinstance(acct, str) or not acct.strip():
        acct = account.get("username")
    return isinstance(acct, str) and "@" not in acct.strip().lstrip("@")


def local_hosts(status: Mapping[str, Any]) -> tuple[set[str], list[str]]:
    """The hosts the local accounts of a status (its author, mentions, boosted and quoted
    statuses) point at, and the local accounts that point at none."""
    hosts: set[str] = set()
    unknown: list[str] = []

    def account(entity: Any, *fallbacks: Any) -> None:
        if not _is_local(entity):
            return
        assert isinstance(entity, Mapping)
        for value in (entity.get("url"), *fallbacks):
            host = _host(value)
            if host:
                hosts.add(host)
                return
        unknown.append(str(entity.get("acct") or entity.get("username")))

    def walk(item: Any) -> None:
        if not isinstance(item, Mapping):
            return
        account(item.get("account"), item.get("url"), item.get("uri"))
        for mention in item.get("mentions") or []:
            account(mention)
        walk(item.get("reblog"))
        quote = item.get("quote")
        if isinstance(quote, Mapping):
            walk(quote.get("quoted_status"))

    walk(status)
    return hosts, unknown


class PayloadReader:
    """Parses the objects of an import, of any network, one at a time (see the module's
    docstring). `mastodon_server`: the domain of the local accounts of the Mastodon statuses
    (None: told from each status)."""

    def __init__(self, *, mastodon_server: str | None = None) -> None:
        self.mastodon_server = mastodon_server.lower() if mastodon_server else None
        self._mastodon = StatusReader(self.mastodon_server or "")
        # Mastodon records whose parent or quoted status was not read yet: (record, "reply" or
        # "quote", the server's local id of the status it points at).
        self._waiting: list[tuple[PostRecord, str, str]] = []
        self.unlinked = 0  # replies and quotes whose parent was in none of the objects

    def read(self, obj: Any) -> Parsed:
        """One object: its records; PayloadError if it is of no known kind or unreadable as a
        whole. Malformed items inside it are left out and said in `Parsed.problems`."""
        kind = payload_kind(obj)
        if kind == "x":
            return parse_object(obj)
        if kind == "mastodon":
            return self._status(obj)
        if kind == "bluesky-post":
            return _unique(parse_post_view(obj))
        if kind == "bluesky-search":
            return self._items(obj["posts"], "a searchPosts answer", bluesky_only=True)
        return self._items(obj, "a list", bluesky_only=False)

    def finish(self) -> Parsed:
        """The Mastodon records that waited for their parent (or quoted) status, linked to it
        when it was read since; call once every object is read."""
        parsed = Parsed()
        known = self._mastodon.known
        added: set[int] = set()
        for record, field, local_id in self._waiting:
            target = known.get(local_id)
            if target is None:
                self.unlinked += 1
            else:
                uri, handle = target
                if field == "reply":
                    record.in_reply_to_id = uri
                    record.in_reply_to_user_id = handle or record.in_reply_to_user_id
                else:
                    record.quoted_id = uri
            if id(record) not in added:  # a reply that quotes waits twice
                added.add(id(record))
                parsed.collected.append(record)
        self._waiting = []
        return parsed

    def _items(self, items: list[Any], what: str, *, bluesky_only: bool) -> Parsed:
        parsed = Parsed()
        for index, item in enumerate(items, start=1):
            try:
                if bluesky_only:
                    parsed.extend(parse_post_view(item))
                    continue
                if isinstance(item, list):
                    raise PayloadError("a list inside a list")
                parsed.extend(self.read(item))
            except PayloadError as exc:
                parsed.problems.append(f"item {index} of {what}: {exc}")
        return _unique(parsed)

    def _server_of(self, status: Mapping[str, Any]) -> str:
        if self.mastodon_server:
            return self.mastodon_server
        hosts, unknown = local_hosts(status)
        what = f"status {status.get('uri') or status.get('id')!r}"
        if unknown:
            raise PayloadError(
                f"{what}: cannot tell the server of its local account(s) "
                f"{', '.join(sorted(set(unknown)))} (no profile url): give the server whose "
                "timeline this is (tweetchat import --mastodon-server HOST)"
            )
        if len(hosts) > 1:
            raise PayloadError(
                f"{what}: its local accounts point at several servers ({', '.join(sorted(hosts))})"
                ": give the server whose timeline this is (tweetchat import --mastodon-server HOST)"
            )
        # No local account at all: no handle needs the domain.
        return next(iter(hosts), "")

    def _status(self, status: dict[str, Any]) -> Parsed:
        reader = self._mastodon
        reader.local_domain = self._server_of(status)
        reader.remember(status)
        parsed, waiting = reader.parse([status])
        held = {id(item.record) for item in waiting}
        parsed.collected = [post for post in parsed.collected if id(post) not in held]
        self._waiting.extend((item.record, item.field, item.local_id) for item in waiting)
        return parsed


def _unique(parsed: Parsed) -> Parsed:
    """Each account once; a post collected in the object is not also context."""
    parsed.users = list({(user.network, user.id): user for user in parsed.users}.values())
    collected = {post.id for post in parsed.collected}
    context: dict[str, PostRecord] = {}
    for post in parsed.context:
        if post.id not in collected:
            context.setdefault(post.id, post)
    parsed.context = list(context.values())
    return parsed
