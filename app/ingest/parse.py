"""Turn X API v2 payloads into plain records: response pages, stream messages and single tweets.

One object in, one `Parsed` out: the posts the object *collects* (its `data`), the posts it only
carries as context (`includes.tweets`, or the tweets `twarc2 flatten` merged inline), the users and
the polls. Nothing here touches the database; a malformed object raises `PayloadError` naming the
problem, so the caller can report it with its file and line and go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

NETWORK = "x"
T = TypeVar("T")


def post_network(post_id: str) -> str:
    """The network of a post (or poll) id. Ids of the three networks cannot collide: X's are
    digits, Mastodon's the status's canonical `https://` uri, Bluesky's its `at://` uri."""
    if post_id.startswith("at://"):
        return "bluesky"
    if post_id.startswith(("https://", "http://")):
        return "mastodon"
    return NETWORK


def account_network(account_id: str) -> str:
    """The network of an account id: X's are digits, Mastodon's `user@domain`, Bluesky's a DID."""
    if account_id.startswith("did:"):
        return "bluesky"
    if "@" in account_id:
        return "mastodon"
    return NETWORK


def id_order(post_id: str) -> tuple[int, str]:
    """A sort key for ids of any network; X's numeric ids sort as numbers."""
    return (len(post_id), post_id)


class _Dated(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


def time_order(post: _Dated) -> tuple[datetime, tuple[int, str]]:
    """A sort key for posts (records, live posts, tagger inputs): by time, then by id."""
    return (post.created_at, id_order(post.id))


class PayloadError(ValueError):
    """An object that is not an X API v2 page, stream message or tweet, or a malformed one."""


@dataclass(slots=True)
class UserRecord:
    id: str
    username: str
    name: str = ""
    profile_image_url: str | None = None
    verified: bool = False
    followers_count: int | None = None
    network: str = NETWORK  # "x", "mastodon", "bluesky": the id is unique within its network


@dataclass(slots=True)
class PollRecord:
    id: str
    options: list[tuple[int, str, int]]  # (position, label, votes)
    voting_status: str | None = None
    end_datetime: datetime | None = None
    duration_minutes: int | None = None
    network: str = NETWORK


@dataclass(slots=True)
class PostRecord:
    id: str
    author_id: str
    created_at: datetime
    text: str
    kind: str  # original | reply | quote | retweet
    in_reply_to_id: str | None
    in_reply_to_user_id: str | None
    quoted_id: str | None
    retweeted_id: str | None
    conversation_id: str | None
    lang: str | None
    poll_id: str | None
    retweet_count: int
    reply_count: int
    like_count: int
    quote_count: int
    impression_count: int | None
    raw: dict[str, Any]
    network: str = NETWORK


@dataclass(slots=True)
class Parsed:
    collected: list[PostRecord] = field(default_factory=list)
    context: list[PostRecord] = field(default_factory=list)
    users: list[UserRecord] = field(default_factory=list)
    polls: list[PollRecord] = field(default_factory=list)
    # Partial errors X sent beside the data (e.g. a replied-to post that was deleted).
    api_errors: int = 0
    # Items of the object that were malformed and left out, each said in a sentence.
    problems: list[str] = field(default_factory=list)

    def extend(self, other: Parsed) -> None:
        self.collected.extend(other.collected)
        self.context.extend(other.context)
        self.users.extend(other.users)
        self.polls.extend(other.polls)
        self.api_errors += other.api_errors
        self.problems.extend(other.problems)


def parse_datetime(value: Any, what: str) -> datetime:
    """X's ISO 8601 timestamps (`2023-03-28T18:05:12.000Z`) as aware UTC datetimes."""
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{what} has no valid time: {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"{what} has an invalid time {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _id(value: Any, what: str, of: str = "") -> str:
    """`value` as an id; `what` (with `of` put in for its `{}`) names it in the error.

    The message is made only for an error: every post has three or more ids to check.
    """
    if type(value) is str and value.isdigit():  # the usual case: ids are strings in v2 JSON
        return value
    what = what.format(of) if of else what
    # A number would lose digits in JavaScript but not here.
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise PayloadError(f"{what} has no valid id: {value!r}")
    text = str(value)
    if not text.isdigit():
        raise PayloadError(f"{what} has a non-numeric id {text!r}")
    return text


# X escapes these three in post text (and only these): `&amp;`, `&lt;`, `&gt;`. Stored text is
# the plain text the person wrote; pages render it as text, never as HTML.
_X_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def unescape_text(text: str) -> str:
    for entity, char in _X_ENTITIES:
        text = text.replace(entity, char)
    return text


def _int(value: Any) -> int:
    if type(value) is int:  # the usual case, checked first: four metrics a post
        return value
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_user(obj: Any) -> UserRecord:
    if not isinstance(obj, dict):
        raise PayloadError(f"a user is not an object: {obj!r:.80}")
    user_id = _id(obj.get("id"), "a user")
    username = obj.get("username")
    if not isinstance(username, str) or not username:
        raise PayloadError(f"user {user_id} has no username")
    metrics = obj.get("public_metrics") if isinstance(obj.get("public_metrics"), dict) else {}
    followers = metrics.get("followers_count") if metrics else None
    return UserRecord(
        id=user_id,
        username=username,
        name=str(obj.get("name") or ""),
        profile_image_url=obj.get("profile_image_url") or None,
        verified=bool(obj.get("verified")) or obj.get("verified_type") in ("blue", "business"),
        followers_count=followers if isinstance(followers, int) else None,
    )


def parse_poll(obj: Any) -> PollRecord:
    if not isinstance(obj, dict):
        raise PayloadError(f"a poll is not an object: {obj!r:.80}")
    poll_id = _id(obj.get("id"), "a poll")
    options = []
    for index, option in enumerate(obj.get("options") or [], start=1):
        if not isinstance(option, dict):
            raise PayloadError(f"poll {poll_id} has a malformed option")
        position = option.get("position")
        options.append(
            (
                position if isinstance(position, int) else index,
                str(option.get("label") or ""),
                _int(option.get("votes")),
            )
        )
    end = obj.get("end_datetime")
    duration = obj.get("duration_minutes")
    return PollRecord(
        id=poll_id,
        options=options,
        voting_status=obj.get("voting_status")
        if isinstance(obj.get("voting_status"), str)
        else None,
        end_datetime=parse_datetime(end, f"poll {poll_id}") if end else None,
        duration_minutes=duration if isinstance(duration, int) else None,
    )


def parse_tweet(obj: Any) -> PostRecord:
    """One v2 tweet object. Its kind is the first of retweet, quote, reply that applies."""
    if not isinstance(obj, dict):
        raise PayloadError(f"a tweet is not an object: {obj!r:.80}")
    post_id = _id(obj.get("id"), "a tweet")
    text = obj.get("text")
    if not isinstance(text, str):
        raise PayloadError(f"tweet {post_id} has no text")
    author = obj.get("author_id")
    if author is None and isinstance(obj.get("author"), dict):
        author = obj["author"].get("id")
    author_id = _id(author, "the author of tweet {}", post_id)
    refs: dict[str, str] = {}
    for ref in obj.get("referenced_tweets") or []:
        if isinstance(ref, dict) and ref.get("type") in ("retweeted", "quoted", "replied_to"):
            refs.setdefault(ref["type"], _id(ref.get("id"), "a post referenced by {}", post_id))
    if "retweeted" in refs:
        kind = "retweet"
    elif "quoted" in refs:
        kind = "quote"
    elif "replied_to" in refs:
        kind = "reply"
    else:
        kind = "original"
    metrics = obj.get("public_metrics") if isinstance(obj.get("public_metrics"), dict) else {}
    assert isinstance(metrics, dict)
    impressions = metrics.get("impression_count")
    attachments = obj.get("attachments") if isinstance(obj.get("attachments"), dict) else {}
    assert isinstance(attachments, dict)
    poll_ids = attachments.get("poll_ids") or []
    poll_id = _id(poll_ids[0], "the poll of tweet {}", post_id) if poll_ids else None
    reply_user = obj.get("in_reply_to_user_id")
    conversation = obj.get("conversation_id")
    lang = obj.get("lang")
    return PostRecord(
        id=post_id,
        author_id=author_id,
        created_at=parse_datetime(obj.get("created_at"), f"tweet {post_id}"),
        text=unescape_text(text),
        kind=kind,
        in_reply_to_id=refs.get("replied_to"),
        in_reply_to_user_id=str(reply_user) if reply_user else None,
        quoted_id=refs.get("quoted"),
        retweeted_id=refs.get("retweeted"),
        conversation_id=str(conversation) if conversation else None,
        lang=lang if isinstance(lang, str) else None,
        poll_id=poll_id,
        retweet_count=_int(metrics.get("retweet_count")),
        reply_count=_int(metrics.get("reply_count")),
        like_count=_int(metrics.get("like_count")),
        quote_count=_int(metrics.get("quote_count")),
        impression_count=impressions if isinstance(impressions, int) else None,
        raw=obj,
    )


def _is_tweet(obj: dict[str, Any]) -> bool:
    return "id" in obj and "text" in obj


def parse_object(obj: Any) -> Parsed:
    """Any one object an archive line may hold.

    - a response page: `{"data": [tweets], "includes": {...}, "meta": {...}}` (search, lookup);
    - a stream message: `{"data": {tweet}, "includes": {...}, "matching_rules": [...]}`;
    - a page with no results (`{"meta": {"result_count": 0}}`) or only `errors`;
    - a single tweet, possibly flattened by `twarc2 flatten` (author and references inline).
    """
    if not isinstance(obj, dict):
        raise PayloadError(f"expected a JSON object, found {type(obj).__name__}")
    if "data" in obj or "includes" in obj or "meta" in obj or "errors" in obj:
        return _parse_page(obj)
    if _is_tweet(obj):
        return _parse_flat_tweet(obj)
    keys = ", ".join(sorted(obj)[:8]) or "none"
    raise PayloadError(f"not an X API v2 page, stream message or tweet (its keys: {keys})")


def _parse_page(obj: dict[str, Any]) -> Parsed:
    parsed = Parsed()
    data = obj.get("data")
    if isinstance(data, dict):
        data = [data]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise PayloadError(f"`data` is neither a list nor an object: {type(data).__name__}")
    if not data and "errors" in obj and "meta" not in obj and "includes" not in obj:
        # An error-only response (twarc records them too): nothing to import, nothing broken.
        errors = obj.get("errors")
        parsed.api_errors = len(errors) if isinstance(errors, list) else 1
        return parsed
    includes = obj.get("includes") or {}
    if not isinstance(includes, dict):
        raise PayloadError("`includes` is not an object")
    # One malformed item must not cost the other 99 posts of its page.
    parsed.collected = _each(data, parse_tweet, parsed.problems)
    collected_ids = {post.id for post in parsed.collected}
    # Lookups with edit history put the data tweet itself in includes: store it once.
    parsed.context = [
        record
        for record in _each(includes.get("tweets") or [], parse_tweet, parsed.problems)
        if record.id not in collected_ids
    ]
    parsed.users = _each(includes.get("users") or [], parse_user, parsed.problems)
    parsed.polls = _each(includes.get("polls") or [], parse_poll, parsed.problems)
    errors = obj.get("errors")
    parsed.api_errors = len(errors) if isinstance(errors, list) else 0
    return parsed


def _each(items: Any, parse: Callable[[Any], T], problems: list[str]) -> list[T]:
    if not isinstance(items, list):
        problems.append(f"expected a list, found {type(items).__name__}")
        return []
    records = []
    for item in items:
        try:
            records.append(parse(item))
        except PayloadError as exc:
            problems.append(str(exc))
    return records


def _parse_flat_tweet(obj: dict[str, Any]) -> Parsed:
    parsed = Parsed()
    tweet = {key: value for key, value in obj.items() if key != "__twarc"}
    parsed.collected.append(parse_tweet(tweet))
    _collect_inline(tweet, parsed)
    for ref in tweet.get("referenced_tweets") or []:
        # Flattened references carry the whole referenced tweet, author included.
        if isinstance(ref, dict) and "text" in ref and "id" in ref:
            parsed.context.append(parse_tweet({k: v for k, v in ref.items() if k != "type"}))
            _collect_inline(ref, parsed)
    return parsed


def _collect_inline(tweet: dict[str, Any], parsed: Parsed) -> None:
    for key in ("author", "in_reply_to_user"):
        if isinstance(tweet.get(key), dict) and tweet[key].get("username"):
            parsed.users.append(parse_user(tweet[key]))
    entities = tweet.get("entities") if isinstance(tweet.get("entities"), dict) else {}
    assert isinstance(entities, dict)
    for mention in entities.get("mentions") or []:
        if isinstance(mention, dict) and mention.get("id") and mention.get("username"):
            parsed.users.append(parse_user(mention))
    attachments = tweet.get("attachments") if isinstance(tweet.get("attachments"), dict) else {}
    assert isinstance(attachments, dict)
    poll = attachments.get("poll")
    if isinstance(poll, dict):
        parsed.polls.append(parse_poll(poll))
