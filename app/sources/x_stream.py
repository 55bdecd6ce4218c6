"""The X filtered-stream source: keep `GET /2/tweets/search/stream` open and emit what it sends.

`sync_rules` makes the stream's rules say what the chat wants: one rule, the chat's hashtags OR'ed,
tagged `tweetchat:{slug}`; it deletes our stale rules for that chat and never touches rules with
other tags (other chats, other tools sharing the app).

`run_stream` connects and reads one JSON message a line; a blank line is X's keep-alive (every
20 s), and no byte at all for `keepalive_timeout` means a dead connection. It reconnects as X
documents (docs.x.com, "Handling disconnections"): at once after an established connection drops,
then for network errors +250 ms a try up to 16 s, for HTTP errors 5 s doubling to 320 s, for 429
60 s doubling. Posts published while disconnected are not replayed by the stream, so after every
reconnect a recent-search `backfill` from the newest id the stream saw fills the gap (the pipeline
stores each post once, so the overlap is harmless). Since May 2026 search leaves retweets out: the
retweets of a gap are lost, and their counts come from the originals' `public_metrics`.

Each message is one batch, source "x-stream", with position `{"stream_newest_id": ...}`: the
newest id seen so far, by integer comparison (messages may come out of order).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from app import jsonio
from app.ingest.parse import Parsed, PayloadError, parse_object
from app.sources.base import SourceBatch, SourceContext, State
from app.sources.x_api import (
    XApi,
    XAuthError,
    XNetworkError,
    XRateLimited,
    XRequestError,
    XServerError,
    chat_query,
    newest_id,
)
from app.sources.x_search import (
    Backoff,
    Reporter,
    RetryingCaller,
    StopEvent,
    backfill,
    run_until_stopped,
)

SOURCE = "x-stream"
POSITION_KEY = "stream_newest_id"

# X's reconnect schedule, in seconds (multiplied by `backoff_scale`).
NETWORK_STEP, NETWORK_CAP = 0.25, 16.0
HTTP_FIRST, HTTP_CAP = 5.0, 320.0
RATE_LIMIT_FIRST, RATE_LIMIT_CAP = 60.0, 960.0
# Without a known newest id (catch_up off), the gap starts this long before the first connect.
GAP_MARGIN = timedelta(minutes=1)


def rule_tag(slug: str) -> str:
    return f"tweetchat:{slug}"


@dataclass(frozen=True, slots=True)
class RulesSync:
    """What `sync_rules` found and did."""

    rule_id: str
    value: str
    tag: str
    added: bool = False
    deleted: tuple[str, ...] = field(default_factory=tuple)


async def sync_rules(api: XApi, slug: str, hashtags: Sequence[str]) -> RulesSync:
    """Make the stream carry exactly one rule of ours for the chat; returns its id.

    Our rules are those tagged `tweetchat:{slug}`: the one with the right value is kept (or
    added), the others are deleted. Rules with any other tag are left alone.
    """
    value = chat_query(hashtags)
    tag = rule_tag(slug)
    rules = await api.get_rules()
    ours = [rule for rule in rules if rule.get("tag") == tag]
    keep = next((rule for rule in ours if rule.get("value") == value), None)
    stale = tuple(str(rule.get("id")) for rule in ours if rule is not keep)
    if stale:
        await api.delete_rules(stale)
    if keep is not None:
        return RulesSync(str(keep.get("id")), value, tag, deleted=stale)
    answer = await api.add_rules([(value, tag)])
    for rule in answer.get("data") or []:
        if isinstance(rule, dict) and rule.get("value") == value and rule.get("id"):
            return RulesSync(str(rule["id"]), value, tag, added=True, deleted=stale)
    # X refuses a rule whose value another rule already has (another tag, added by hand or by
    # another tool); that rule's posts reach us all the same, so use its id.
    for error in answer.get("errors") or []:
        if isinstance(error, dict) and error.get("id") and error.get("value") == value:
            return RulesSync(str(error["id"]), value, tag, deleted=stale)
    raise XRequestError(
        f"X did not add the stream rule {value!r}: {json.dumps(answer)[:300]}", endpoint="rules"
    )


def _is_ours(message: dict[str, Any], rule: RulesSync | None) -> bool:
    """Whether a message matched the chat's rule (one stream serves every rule of the app)."""
    matching = message.get("matching_rules")
    if rule is None or not isinstance(matching, list) or not matching:
        return True
    for match in matching:
        if isinstance(match, dict) and (
            match.get("tag") == rule.tag or str(match.get("id")) == rule.rule_id
        ):
            return True
    return False


def _stream_problem(message: dict[str, Any]) -> str | None:
    """X's reason when a message is only `errors` (an operational disconnect, say)."""
    if "data" in message or not isinstance(message.get("errors"), list):
        return None
    parts = []
    for error in message["errors"][:2]:
        if isinstance(error, dict):
            parts.append(str(error.get("detail") or error.get("title") or error))
    return "; ".join(parts) or "X sent an error on the stream"


async def run_stream(
    ctx: SourceContext,
    api: XApi,
    *,
    keepalive_timeout: float = 20.0,
    backoff_scale: float = 1.0,
    stop: StopEvent | None = None,
    sync: bool = True,
    catch_up: bool = True,
    search_backoff: Backoff | None = None,
) -> None:
    """Collect the chat from the filtered stream until `stop` is set or X refuses the token.

    `backoff_scale` multiplies X's reconnect delays (tests use ~0.01). `sync` first makes the
    rules match the chat. `catch_up` also backfills on the first connect when nothing was
    seen before (from a day before the chat, as search does); with a stored `stream_newest_id`
    (a restart) the first connect always backfills from it.
    """
    report = Reporter(ctx, SOURCE)
    query = chat_query(ctx.chat.hashtags)
    caller = RetryingCaller(report, search_backoff or Backoff(), f"streaming {query}")
    report("starting", f"streaming {query}")
    stored = ctx.position.get(POSITION_KEY)
    newest: str | None = str(stored) if stored else None
    ended: list[str] = []

    async def handle(line: str, rule: RulesSync | None) -> None:
        nonlocal newest
        try:
            message = jsonio.loads(line)
            if not isinstance(message, dict):
                raise PayloadError("a stream message is not a JSON object")
            problem = _stream_problem(message)
            if problem is not None:
                report("failing", f"X on the stream: {problem}")
                return
            if not _is_ours(message, rule):
                return
            parsed = parse_object(message)
        except (json.JSONDecodeError, PayloadError) as exc:
            # One unreadable message must not take the stream down; the pipeline logs it.
            problem_text = f"unreadable stream message ({exc}): {line[:120]!r}"
            await ctx.emit(SourceBatch(SOURCE, Parsed(problems=[problem_text]), requests=0))
            return
        newest = newest_id(newest, *(post.id for post in parsed.collected))
        report("running", f"streaming {query}")
        await ctx.emit(
            SourceBatch(
                SOURCE,
                parsed,
                position={POSITION_KEY: newest} if newest else None,
                posts_read=len(parsed.collected) + len(parsed.context),
                requests=0,
                # The message's bytes: a storage process parses them again (app/live/storage.py).
                pages=[line.encode()],
            )
        )

    async def connect_loop() -> None:
        nonlocal newest
        rule: RulesSync | None = None
        if sync:
            try:
                rule = await caller.call(lambda: sync_rules(api, ctx.chat.slug, ctx.chat.hashtags))
            except (XAuthError, XRequestError) as exc:
                ended.append(f"X refused the stream rules: {exc.message}")
                return
        network_failures = 0
        http_delay = 0.0
        rate_limit_delay = 0.0
        connected_before = False
        first_connect_at: datetime | None = None
        while True:
            established = False
            try:
                async with api.stream(read_timeout=keepalive_timeout) as connection:
                    established = True
                    http_delay = rate_limit_delay = 0.0
                    first_connect_at = first_connect_at or datetime.now(UTC)
                    report("running", f"connected to the filtered stream for {query}")
                    # Backfill after connecting, not before: whatever is posted from now on
                    # comes on this connection, so the search and the stream overlap, never gap.
                    if newest is not None or connected_before or catch_up:
                        start_time = None
                        if newest is None and not catch_up:
                            start_time = first_connect_at - GAP_MARGIN
                        try:
                            found = await backfill(
                                ctx,
                                api,
                                newest,
                                start_time=start_time,
                                source=SOURCE,
                                position_key=POSITION_KEY,
                                backoff=search_backoff,
                                report=report,
                            )
                        except XRequestError as exc:
                            # Search refusing the request must not stop the stream: say the
                            # gap could not be filled and go on with what the stream sends.
                            report("failing", f"could not backfill the gap: {exc.message}")
                            found = None
                        newest = newest_id(newest, found)
                    connected_before = True
                    async for line in connection.lines():
                        network_failures = 0
                        if line.strip():
                            await handle(line, rule)
                reason = "X closed the stream"
            except XNetworkError as exc:
                reason = exc.message
            except XRateLimited as exc:
                rate_limit_delay = min(rate_limit_delay * 2 or RATE_LIMIT_FIRST, RATE_LIMIT_CAP)
                await _pause(report, "waiting", exc.message, rate_limit_delay * backoff_scale)
                continue
            except XServerError as exc:
                http_delay = min(http_delay * 2 or HTTP_FIRST, HTTP_CAP)
                await _pause(report, "failing", exc.message, http_delay * backoff_scale)
                continue
            except XAuthError as exc:
                ended.append(f"X refused the credentials: {exc.message}")
                return
            except XRequestError as exc:
                ended.append(f"X rejected the stream request: {exc.message}")
                return
            network_failures += 1
            # An established connection that drops is retried at once; failing again, +250 ms
            # a try.
            steps = network_failures - 1 if established else network_failures
            delay = min(NETWORK_STEP * steps, NETWORK_CAP) * backoff_scale
            await _pause(report, "failing", reason, delay)

    stopped = await run_until_stopped(stop, connect_loop)
    if ended:
        report("stopped", ended[0])
    elif stopped:
        report("stopped", "stopped on request")


async def _pause(report: Reporter, state: State, reason: str, delay: float) -> None:
    retry_at = datetime.now(UTC) + timedelta(seconds=delay)
    when = f"in {delay:g} s" if delay > 0 else "now"
    report(state, f"{reason}; reconnecting {when}", retry_at)
    if delay > 0:
        await anyio.sleep(delay)
