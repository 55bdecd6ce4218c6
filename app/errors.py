"""Domain errors. Each carries an HTTP status and a short code; the API turns any of them into
one JSON shape, `{"error": {"code", "message"}}`, and the CLI prints the message and exits 2.

    TweetchatError
     ├── Unauthorized        401  no credential, or an unknown one
     ├── Forbidden           403  a credential that does not reach this chat or action
     ├── NotFound            404  unknown chat, post, series
     ├── Conflict            409  a chat with that slug exists
     ├── InvalidInput        422  bad dates, slugs, hashtags, options
     │    └── ArchiveError        a file that cannot be imported at all
     └── StorageError        503  the database cannot be opened or upgraded
"""

from __future__ import annotations


class TweetchatError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(TweetchatError):
    status = 401
    code = "unauthorized"


class Forbidden(TweetchatError):
    status = 403
    code = "forbidden"


class NotFound(TweetchatError):
    status = 404
    code = "not_found"


class Conflict(TweetchatError):
    status = 409
    code = "conflict"


class InvalidInput(TweetchatError):
    status = 422
    code = "invalid_input"


class ArchiveError(InvalidInput):
    code = "bad_archive"


class StorageError(TweetchatError):
    status = 503
    code = "storage_unavailable"


class UnknownChat(NotFound):
    code = "unknown_chat"

    def __init__(self, slug: str) -> None:
        super().__init__(
            f"Unknown chat {slug!r}. List chats with `tweetchat chat list`, "
            f"or create it with `tweetchat chat create {slug} ...`."
        )
