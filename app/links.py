"""Links to posts on their own sites (issue 7), made only from parts that were checked.

Post data is untrusted. An X link is built from a numeric id and a username of X's form; a
Bluesky link from the post's `at://` uri (its DID and record key) and a handle of the DNS form; a
Mastodon link is the status's own `url` from its payload (or, without one, its `uri`), kept only
when it is an absolute http(s) URL with a host. Anything else gets no link: "".
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

NETWORKS = ("x", "mastodon", "bluesky")
NETWORK_NAMES = {"x": "X", "mastodon": "Mastodon", "bluesky": "Bluesky"}

_X_ID = re.compile(r"[0-9]{1,30}")
_X_USERNAME = re.compile(r"[A-Za-z0-9_]{1,50}")
_AT_POST = re.compile(
    r"at://(did:[a-z]{1,32}:[A-Za-z0-9._:%-]{1,2000})/app\.bsky\.feed\.post/([A-Za-z0-9._~:-]{1,512})"
)
_HANDLE = re.compile(
    r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
# Whitespace, controls, quotes, angle brackets, backslashes and backticks have no place in a link.
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\"'<>\\`]")
MAX_URL = 2048


def web_url(value: object) -> str | None:
    """`value` when it is an absolute http(s) URL with a host (and no user or password), else
    None."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL or _UNSAFE.search(value):
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # a malformed port raises
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    return value


def status_url_of(network: str, raw: Any) -> str | None:
    """The web page a Mastodon status gives for itself (its `url`), from the stored payload."""
    if network != "mastodon" or not isinstance(raw, dict):
        return None
    url = raw.get("url")
    return url if isinstance(url, str) else None


def post_url(
    network: str, post_id: str, username: str | None, status_url: str | None = None
) -> str:
    """The post's page on its own site, or "" when no safe link can be made.

    - X: `https://x.com/{username}/status/{id}` (`/i/web/status/{id}` for an unknown username).
    - Mastodon: the status's `url` from its payload, else its `uri` (the post's id).
    - Bluesky: `https://bsky.app/profile/{handle, else the DID}/post/{record key}`.
    """
    if network == "x":
        if not _X_ID.fullmatch(post_id):
            return ""
        user = username if username and _X_USERNAME.fullmatch(username) else "i/web"
        return f"https://x.com/{user}/status/{post_id}"
    if network == "mastodon":
        return web_url(status_url) or web_url(post_id) or ""
    if network == "bluesky":
        found = _AT_POST.fullmatch(post_id)
        if found is None:
            return ""
        did, rkey = found.groups()
        handle = (username or "").lower()
        actor = handle if _HANDLE.fullmatch(handle) and not handle.endswith(".invalid") else did
        return f"https://bsky.app/profile/{actor}/post/{rkey}"
    return ""
