"""Periodic refreshes from X: trends for the configured location, and posts' current metrics.

The pipeline calls these every few minutes during a chat. `fetch_trends` never raises for X's
refusals: a plan without trends (403), an unknown location (404), a rate limit or an outage all
come back as `unavailable` with the reason, so the screen can say "trending: unavailable (...)".
`lookup_posts` re-reads posts by id (100 a request) for their fresh `public_metrics` and poll
votes; X's partial errors (deleted or protected posts) are counted in `Parsed.api_errors`.
The looked-up posts are in `Parsed.collected`: the caller updates metrics from them, it does not
treat them as newly collected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app.ingest.parse import Parsed, parse_object
from app.sources.x_api import MAX_PAGE, XApi, XApiError

UK_WOEID = 23424975


@dataclass(frozen=True, slots=True)
class Trend:
    name: str
    tweet_count: int | None
    rank: int  # 1 = first in X's list


@dataclass(frozen=True, slots=True)
class TrendsResult:
    """Trends for a location: `ok` with the list, or not, with X's reason."""

    woeid: int
    ok: bool
    trends: list[Trend] = field(default_factory=list)
    reason: str = ""
    status: int | None = None  # the HTTP status when X refused

    def rank_of(self, hashtag: str) -> int | None:
        """The rank of a hashtag (with or without `#`, any case) if it is trending."""
        wanted = hashtag.lstrip("#").casefold()
        for trend in self.trends:
            if trend.name.lstrip("#").casefold() == wanted:
                return trend.rank
        return None


async def fetch_trends(api: XApi, woeid: int = UK_WOEID) -> TrendsResult:
    """The location's trends in X's order (rank 1 first), or why they are unavailable."""
    try:
        payload = await api.trends(woeid)
    except XApiError as exc:
        return TrendsResult(woeid, ok=False, reason=exc.message, status=exc.status)
    data = payload.get("data")
    if data is None and payload.get("errors"):
        return TrendsResult(woeid, ok=False, reason=f"X sent errors: {payload['errors']!r:.200}")
    trends: list[Trend] = []
    for item in data if isinstance(data, list) else []:
        name = item.get("trend_name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            continue
        count: Any = item.get("tweet_count")
        if not isinstance(count, int) or isinstance(count, bool):
            count = None  # X leaves it out when it has no count for the last 24 h
        trends.append(Trend(name=name, tweet_count=count, rank=len(trends) + 1))
    return TrendsResult(woeid, ok=True, trends=trends)


async def lookup_posts(api: XApi, ids: Iterable[str]) -> Parsed:
    """The posts' current state (metrics, polls), 100 ids a request; raises XApiError."""
    unique = list(dict.fromkeys(str(post_id) for post_id in ids if str(post_id).isdigit()))
    result = Parsed()
    for start in range(0, len(unique), MAX_PAGE):
        page = await api.lookup(unique[start : start + MAX_PAGE])
        result.extend(parse_object(page))
    return result
