"""What a chat's report says, read from the store: every figure, list and thread, no formatting.

The headline figures, questions, top tweets and polls come from `app.stats.chat_stats`, the
figures' reference implementation, so the report always agrees with `tweetchat stats`, the API and
the exports. The rest (activity over time, threads, words, contributors) is worked out here from
one frame of the chat's collected posts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Chat, ChatPost, Post, Series, SourceState, TrendSnapshot
from app.links import NETWORKS
from app.outages import chat_outages
from app.report.words import Ranked, rank_words
from app.stats import (
    answers_filter,
    chat_stats,
    iso_time,
    post_object,
    posts_query,
    trending_of,
    unanswered_query,
)

if TYPE_CHECKING:
    import pandas as pd

TOP_ANSWERS = 5
THREADS_PER_QUESTION = 5
POSTS_PER_THREAD = 8
TOP_CONTRIBUTORS = 15
CLOUD_WORDS = 60
TOP_PHRASES = 10
QUIET_MINUTES = 3  # a stretch of the chat hour this long without a post is listed
X_PRICE_NOTE = "X charges per post read"


@dataclass
class QuestionReport:
    number: int
    text: str
    planned_at: datetime | None
    posted_at: datetime | None
    answers_chat: int
    participants_chat: int
    answers_all: int
    participants_all: int
    unanswered: int
    top: list[dict[str, Any]]
    threads: list[list[dict[str, Any]]]
    thread_count: int
    threads_with_panel: int
    words: list[Ranked]
    phrases: list[Ranked]


@dataclass
class ChatReport:
    chat: Chat
    zone: ZoneInfo
    generated_at: datetime
    figures: dict[str, dict[str, Any]]  # chat_stats for "chat" and "all"
    impressions: dict[str, tuple[int, int]]  # window -> (sum, posts with a figure)
    trending: dict[str, Any]
    hourly: list[dict[str, Any]]
    minutely: list[dict[str, Any]]
    peak_minute: dict[str, Any] | None
    peak_hour: dict[str, Any] | None
    hour_bin: str  # "hour" or "day"
    most_popular: dict[str, Any] | None
    polls: list[dict[str, Any]]
    questions: list[QuestionReport]
    contributors: list[dict[str, Any]]
    returning: dict[str, Any] | None
    collection: dict[str, Any]
    question_marks: list[dict[str, Any]] = field(default_factory=list)


def _frame(session: Session, chat: Chat) -> pd.DataFrame:
    """One row per collected post: what the report needs of it."""
    import pandas as pd

    query, _ = posts_query(chat)
    query = query.where(ChatPost.chat_id == chat.id).order_by(ChatPost.created_at, ChatPost.post_id)
    rows = []
    for chat_post, post, username, name, retweets in session.execute(
        query.execution_options(yield_per=2000)
    ):
        obj = post_object(chat_post, post, username, name, int(retweets))
        obj.update(
            created=post.created_at,
            author_id=post.author_id,
            person=chat_post.person,
            copy_of=chat_post.copy_of,
            in_reply_to_id=post.in_reply_to_id,
            retweeted_id=post.retweeted_id,
            collected_retweet_metric=post.retweet_count,
            impressions_known=post.impression_count is not None,
            poll_id=post.poll_id,
            in_window=chat.start_at <= post.created_at < chat.end_at,
            handled=chat_post.handled,
        )
        rows.append(obj)
    columns = [
        "id",
        "network",
        "username",
        "name",
        "text",
        "created_at",
        "kind",
        "question",
        "tag_method",
        "retweets",
        "likes",
        "replies",
        "quotes",
        "impressions",
        "url",
        "created",
        "author_id",
        "person",
        "copy_of",
        "in_reply_to_id",
        "retweeted_id",
        "collected_retweet_metric",
        "impressions_known",
        "poll_id",
        "in_window",
        "handled",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    if len(frame):
        also: dict[str, list[dict[str, str]]] = {}
        for row in frame[frame["copy_of"].notna()].to_dict("records"):
            also.setdefault(row["copy_of"], []).append(
                {"network": row["network"], "id": row["id"], "url": row["url"]}
            )
        frame["also"] = [also.get(post_id, []) for post_id in frame["id"]]
    return frame


def _counted(frame: pd.DataFrame) -> pd.DataFrame:
    """The posts that count: cross-posts' copies left out (the first post lists them under
    `also`), a reply to a copy taken as a reply to its first post (threads)."""
    if not len(frame):
        return frame
    firsts = dict(zip(frame["id"], frame["copy_of"], strict=True))
    counted = frame[frame["copy_of"].isna()].copy()
    counted["in_reply_to_id"] = [
        firsts.get(parent) or parent if isinstance(parent, str) else parent
        for parent in counted["in_reply_to_id"]
    ]
    return counted


def _local(value: datetime, zone: ZoneInfo) -> datetime:
    return value.astimezone(zone)


def _activity(
    frame: pd.DataFrame, chat: Chat, zone: ZoneInfo
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Posts per hour (per day past ten days) across the collection, and per minute across the
    chat, originals and retweets apart, in the chat's local time, empty bins included."""
    import pandas as pd

    def binned(
        data: pd.DataFrame, freq: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> list[dict[str, Any]]:
        index = pd.date_range(start, end, freq=freq, inclusive="left", tz=zone.key)
        series = {}
        for label, part in (
            ("original tweets", data[data["kind"] != "retweet"]),
            ("retweets", data[data["kind"] == "retweet"]),
        ):
            local = pd.to_datetime(part["created"], utc=True).dt.tz_convert(zone.key)
            counts = local.dt.floor(freq).value_counts()
            series[label] = counts.reindex(index, fill_value=0)
        return [
            {
                "start": stamp.to_pydatetime(),
                "original tweets": int(series["original tweets"].iloc[i]),
                "retweets": int(series["retweets"].iloc[i]),
            }
            for i, stamp in enumerate(index)
        ]

    start = pd.Timestamp(chat.start_at).tz_convert(zone.key)
    end = pd.Timestamp(chat.end_at).tz_convert(zone.key)
    minutely = binned(
        frame[frame["in_window"]] if len(frame) else frame, "min", start.floor("min"), end
    )
    if len(frame):
        first = pd.Timestamp(frame["created"].min()).tz_convert(zone.key)
        last = pd.Timestamp(frame["created"].max()).tz_convert(zone.key)
        first, last = min(first, start), max(last, end - pd.Timedelta(seconds=1))
    else:
        first, last = start, end - pd.Timedelta(seconds=1)
    freq, label = ("h", "hour") if last - first <= pd.Timedelta(days=10) else ("D", "day")
    hourly = binned(frame, freq, first.floor(freq), last.floor(freq) + pd.Timedelta(1, freq))
    return hourly, minutely, label


def _peak(bins: list[dict[str, Any]]) -> dict[str, Any] | None:
    best = max(bins, key=lambda b: b["original tweets"] + b["retweets"], default=None)
    if best is None or best["original tweets"] + best["retweets"] == 0:
        return None
    return {**best, "total": best["original tweets"] + best["retweets"]}


def _impressions(frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
    out = {}
    for window, part in (("chat", frame[frame["in_window"]]), ("all", frame)):
        known = part[(part["kind"] != "retweet") & part["impressions_known"]]
        out[window] = (int(known["impressions"].sum()), len(known))
    return out


def _trending(session: Session, chat: Chat) -> dict[str, Any]:
    """The best trends reading during the chat (or else the latest): our ranks and the trends
    around them."""
    snapshots = list(
        session.scalars(
            select(TrendSnapshot)
            .where(TrendSnapshot.chat_id == chat.id)
            .order_by(TrendSnapshot.taken_at, TrendSnapshot.id)
        )
    )
    if not snapshots:
        return {"read": False, "readings": 0}
    available = [s for s in snapshots if s.available]
    best: tuple[int, TrendSnapshot, list[dict[str, Any]]] | None = None
    for snapshot in available:
        ours, _ = trending_of(snapshot, chat.hashtags)
        if ours:
            rank = min(t["rank"] for t in ours)
            in_chat = chat.start_at <= snapshot.taken_at < chat.end_at + timedelta(hours=1)
            key = rank if in_chat else rank + 10_000
            if best is None or key < best[0]:
                best = (key, snapshot, ours)
    if best is None:
        latest = snapshots[-1]
        _, note = trending_of(latest, chat.hashtags)
        return {
            "read": True,
            "readings": len(snapshots),
            "available": len(available),
            "ours": [],
            "note": note,
            "location": latest.location,
        }
    _, snapshot, ours = best
    ranks = [t["rank"] for t in ours]
    low, high = max(1, min(ranks) - 5), max(ranks) + 2
    our_names = {t["hashtag"].lstrip("#").casefold() for t in ours}
    around = []
    for i, trend in enumerate(snapshot.trends, start=1):
        rank = int(trend.get("rank") or i)
        if low <= rank <= high:
            name = str(trend.get("name", ""))
            around.append(
                {
                    "rank": rank,
                    "name": name,
                    "tweet_count": trend.get("tweet_count"),
                    "ours": name.lstrip("#").casefold() in our_names,
                }
            )
    return {
        "read": True,
        "readings": len(snapshots),
        "available": len(available),
        "ours": ours,
        "location": snapshot.location,
        "taken_at": snapshot.taken_at,
        "around": around[:12],
    }


def _polls(session: Session, chat: Chat, polls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The polls with the post that asked each (its author, text, time and question)."""
    out = []
    for poll in polls:
        row = session.execute(
            select(Post, ChatPost.question)
            .outerjoin(
                ChatPost,
                (ChatPost.network == Post.network)
                & (ChatPost.post_id == Post.id)
                & (ChatPost.chat_id == chat.id),
            )
            .where(Post.poll_id == poll["id"], Post.kind != "retweet")
            .order_by(Post.created_at)
            .limit(1)
        ).first()
        asked = None
        if row is not None:
            post, question = row
            from app.db.models import Account

            author = session.get(Account, (post.network, post.author_id))
            asked = {
                "username": author.username if author else "",
                "name": author.name if author else "",
                "text": post.text,
                "created": post.created_at,
                "question": question,
            }
        out.append({**poll, "asked": asked})
    return out


def _threads(
    frame: pd.DataFrame, number: int, roles: dict[str, str], question_posts: set[str]
) -> tuple[list[list[dict[str, Any]]], int, int]:
    """The question's conversations: each answer that got a reply, with the replies under it.

    Returns the threads to show (those with the panel or host first, then those with the most
    people), each a list of posts in time order with their depth; and how many threads there
    were, and how many with the panel or host."""
    posts = frame[frame["kind"] != "retweet"]
    by_id: dict[str, dict[str, Any]] = {}
    for row in posts.to_dict("records"):
        question = row["question"]
        row["question"] = None if question != question or question is None else int(question)
        by_id[row["id"]] = row
    children: dict[str, list[str]] = {}
    for post_id, row in by_id.items():
        parent = row["in_reply_to_id"]
        if parent in by_id:
            children.setdefault(parent, []).append(post_id)

    def is_answer(post_id: str) -> bool:
        return by_id[post_id]["question"] == number and post_id not in question_posts

    roots = [
        post_id
        for post_id, row in by_id.items()
        if is_answer(post_id)
        and post_id in children
        and not (row["in_reply_to_id"] in by_id and is_answer(row["in_reply_to_id"]))
    ]
    threads = []
    for root in roots:
        members: list[dict[str, Any]] = []
        stack = [(root, 0)]
        while stack:
            post_id, depth = stack.pop()
            row = by_id[post_id]
            role = roles.get(row["username"].lower(), "")
            members.append({**row, "depth": min(depth, 3), "role": role})
            stack.extend((child, depth + 1) for child in children.get(post_id, []))
        members.sort(key=lambda m: (m["created"], m["id"]))
        threads.append(members)
    with_panel = [t for t in threads if any(m["role"] for m in t[1:])]
    threads.sort(
        key=lambda t: (
            not any(m["role"] for m in t[1:]),
            -len({m["author_id"] for m in t}),
            -len(t),
            t[0]["created"],
        )
    )
    shown = [t[:POSTS_PER_THREAD] for t in threads[:THREADS_PER_QUESTION]]
    return shown, len(threads), len(with_panel)


def _with_role(post: dict[str, Any], roles: dict[str, str]) -> dict[str, Any]:
    return {**post, "role": roles.get(post["username"].lower(), "")}


def roles_of(chat: Chat) -> dict[str, str]:
    """username (lower case) -> "host" or "panel"."""
    roles = {name.lower(): "panel" for name in chat.panel}
    roles.update({name.lower(): "host" for name in chat.hosts})
    return roles


def _questions(
    session: Session, chat: Chat, figures: dict[str, dict[str, Any]], frame: pd.DataFrame
) -> list[QuestionReport]:
    answers_where, staff_ids = answers_filter(session, chat, ChatPost.chat_id == chat.id)
    unanswered = dict(
        session.execute(
            select(ChatPost.question, func.count())
            .where(unanswered_query(chat, answers_where, staff_ids))
            .group_by(ChatPost.question)
        ).all()
    )
    base, retweets = posts_query(chat)
    ranking = (retweets.desc(), Post.like_count.desc(), Post.created_at, Post.id)
    roles = roles_of(chat)
    question_posts = {q.post_id for q in chat.questions if q.post_id}
    in_chat = {q["number"]: q for q in figures["chat"]["questions"]}
    planned = {q.number: q for q in chat.questions}
    answers = frame[(frame["kind"] != "retweet") & frame["question"].notna()]
    if len(answers):
        answers = answers[~answers["id"].isin(question_posts)]
    out = []
    for q in figures["all"]["questions"]:
        number = q["number"]
        top_rows = session.execute(
            base.where(answers_where, ChatPost.question == number)
            .order_by(*ranking)
            .limit(TOP_ANSWERS)
        )
        threads, count, with_panel = _threads(frame, number, roles, question_posts)
        texts = answers[answers["question"] == number]["text"].tolist() if len(answers) else []
        words, phrases = rank_words(texts, chat.hashtags, limit=CLOUD_WORDS)
        question = planned.get(number)
        out.append(
            QuestionReport(
                number=number,
                text=q["text"],
                planned_at=question.planned_at if question else None,
                posted_at=question.posted_at if question else None,
                answers_chat=in_chat.get(number, {}).get("answers", 0),
                participants_chat=in_chat.get(number, {}).get("participants", 0),
                answers_all=q["answers"],
                participants_all=q["participants"],
                unanswered=int(unanswered.get(number, 0)),
                top=[_with_role(post_object(*row), roles) for row in top_rows],
                threads=threads,
                thread_count=count,
                threads_with_panel=with_panel,
                words=words,
                phrases=phrases[:TOP_PHRASES],
            )
        )
    return out


def _contributors(frame: pd.DataFrame, chat: Chat) -> list[dict[str, Any]]:
    """The most active people in the chat hour (linked accounts together, shown by the account
    they posted most with; `accounts` lists them all)."""
    part = frame[frame["in_window"]]
    if not len(part):
        return []
    roles = roles_of(chat)
    question_posts = {q.post_id for q in chat.questions if q.post_id}
    out = []
    for person, posts in part.groupby("person"):
        originals = posts[posts["kind"] != "retweet"]
        answers = originals[originals["question"].notna() & ~originals["id"].isin(question_posts)]
        per_account = posts.groupby("author_id").size().sort_values(ascending=False, kind="stable")
        main = posts[posts["author_id"] == per_account.index[0]]
        username = str(main["username"].iloc[0])
        accounts = []
        for author_id in per_account.index:
            first = posts[posts["author_id"] == author_id].iloc[0]
            accounts.append({"network": str(first["network"]), "username": str(first["username"])})
        role = next(
            (roles[a["username"].lower()] for a in accounts if a["username"].lower() in roles), ""
        )
        out.append(
            {
                "author_id": str(per_account.index[0]),
                "person": person,
                "network": str(main["network"].iloc[0]),
                "accounts": accounts,
                "username": username,
                "name": str(main["name"].iloc[0]),
                "role": role,
                "posts": len(posts),
                "original_tweets": len(originals),
                "answers": len(answers),
                "questions": int(answers["question"].nunique()),
                "retweets_made": int((posts["kind"] == "retweet").sum()),
                "retweets_received": int(originals["retweets"].sum()),
                "likes_received": int(originals["likes"].sum()),
            }
        )
    out.sort(key=lambda c: (-c["original_tweets"], -c["posts"], c["username"].lower()))
    return out[:TOP_CONTRIBUTORS]


def authors(session: Session, chat: Chat, *, hour_only: bool = False) -> set[str]:
    """The people (linked accounts as one) with a collected post in the chat that counts (in
    its hour only, if asked)."""
    query = (
        select(ChatPost.person)
        .distinct()
        .where(ChatPost.chat_id == chat.id, ChatPost.copy_of.is_(None))
    )
    if hour_only:
        query = query.where(ChatPost.created_at >= chat.start_at, ChatPost.created_at < chat.end_at)
    return set(session.scalars(query))


def returning_split(session: Session, chat: Chat) -> dict[str, Any] | None:
    """Participants of the chat hour seen in an earlier chat of the series (any window), and not."""
    if chat.series is None:
        return None
    earlier = [c for c in chat.series.chats if c.start_at < chat.start_at]
    hour = authors(session, chat, hour_only=True)
    seen: set[str] = set()
    if earlier:
        seen = set(
            session.scalars(
                select(ChatPost.person)
                .distinct()
                .where(ChatPost.chat_id.in_([c.id for c in earlier]), ChatPost.copy_of.is_(None))
            )
        )
    returning = len(hour & seen)
    return {
        "series": chat.series,
        "earlier": sorted(earlier, key=lambda c: c.start_at),
        "participants": len(hour),
        "returning": returning,
        "first_time": len(hour) - returning,
    }


def _quiet_stretches(minutely: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stretches: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []
    for b in [*minutely, None]:
        if b is not None and b["original tweets"] + b["retweets"] == 0:
            run.append(b)
            continue
        if len(run) >= QUIET_MINUTES:
            stretches.append(
                {
                    "start": run[0]["start"],
                    "end": run[-1]["start"] + timedelta(minutes=1),
                    "minutes": len(run),
                }
            )
        run = []
    return stretches


def _collection(
    session: Session,
    chat: Chat,
    every: pd.DataFrame,
    frame: pd.DataFrame,
    minutely: list[dict[str, Any]],
) -> dict[str, Any]:
    """How the posts were collected: `every` is every collected post, `frame` those that count
    (cross-posts' copies left out)."""
    states = list(
        session.scalars(
            select(SourceState).where(SourceState.chat_id == chat.id).order_by(SourceState.source)
        )
    )
    originals = frame[frame["kind"] != "retweet"] if len(frame) else frame
    collected_rts = frame[frame["kind"] == "retweet"] if len(frame) else frame
    collected_of = collected_rts["retweeted_id"].value_counts() if len(collected_rts) else None
    from_metrics = 0
    metric_total = 0
    collected_total = 0
    for row in originals.to_dict("records") if len(originals) else []:
        collected = int(collected_of.get(row["id"], 0)) if collected_of is not None else 0
        metric = int(row["collected_retweet_metric"])
        collected_total += collected
        metric_total += max(metric, collected)
        if metric > collected:
            from_metrics += 1
    methods: dict[str, int] = {}
    if len(originals):
        tagged = originals[originals["tag_method"].notna()]
        methods = {str(k): int(v) for k, v in tagged["tag_method"].value_counts().items()}
    return {
        "source": chat.source,
        "states": states,
        "outages": chat_outages(session, chat),
        "posts": len(every),
        "copies": int(every["copy_of"].notna().sum()) if len(every) else 0,
        "first": every["created"].min() if len(every) else None,
        "last": every["created"].max() if len(every) else None,
        "retweets_collected": len(collected_rts),
        "retweets_of_originals_collected": collected_total,
        "retweets_by_metrics": metric_total,
        "originals_from_metrics": from_metrics,
        "tag_methods": methods,
        "networks": _networks(every),
        "quiet": _quiet_stretches(minutely),
        "posts_read": sum(s.posts_read for s in states),
        "requests": sum(s.requests for s in states),
    }


def _networks(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The collected posts per network (X, Mastodon, Bluesky), with their participants."""
    if not len(frame):
        return []
    seen = set(frame["network"])
    out = []
    for network in [n for n in NETWORKS if n in seen] + sorted(seen - set(NETWORKS)):
        posts = frame[frame["network"] == network]
        retweets = int((posts["kind"] == "retweet").sum())
        out.append(
            {
                "network": network,
                "copies": int(posts["copy_of"].notna().sum()),
                "posts": len(posts),
                "original_tweets": len(posts) - retweets,
                "retweets": retweets,
                "participants": int(posts["author_id"].nunique()),
            }
        )
    return out


def build_chat_report(session: Session, chat: Chat) -> ChatReport:
    zone = ZoneInfo(chat.timezone)
    figures = {window: chat_stats(session, chat, window) for window in ("chat", "all")}
    collected = _frame(session, chat)
    frame = _counted(collected)
    hourly, minutely, hour_bin = _activity(frame, chat, zone)
    top = figures["chat"]["top_tweets"] or figures["all"]["top_tweets"]
    most_popular = None
    if top:
        most_popular = {
            **_with_role(top[0], roles_of(chat)),
            "in_window": bool(figures["chat"]["top_tweets"]),
        }
    questions = {q.number: q for q in chat.questions}
    marks = [
        {"number": q.number, "at": q.posted_at or q.planned_at}
        for q in questions.values()
        if (q.posted_at or q.planned_at)
        and chat.start_at <= (q.posted_at or q.planned_at) < chat.end_at  # type: ignore[operator]
    ]
    return ChatReport(
        chat=chat,
        zone=zone,
        generated_at=datetime.now(UTC),
        figures=figures,
        impressions=_impressions(frame) if len(frame) else {"chat": (0, 0), "all": (0, 0)},
        trending=_trending(session, chat),
        hourly=hourly,
        minutely=minutely,
        peak_minute=_peak(minutely),
        peak_hour=_peak(hourly),
        hour_bin=hour_bin,
        most_popular=most_popular,
        polls=_polls(session, chat, figures["all"]["polls"]),
        questions=_questions(session, chat, figures, frame),
        contributors=_contributors(frame, chat),
        returning=returning_split(session, chat),
        collection=_collection(session, chat, collected, frame, minutely),
        question_marks=marks,
    )


@dataclass
class SeriesReport:
    series: Series
    generated_at: datetime
    rows: list[dict[str, Any]]
    max_questions: int


def build_series_report(session: Session, series: Series) -> SeriesReport:
    """Month over month: for each chat of the series, its figures in the hour and across the
    collection, answers per question, and first-time versus returning participants."""
    chats = sorted(series.chats, key=lambda c: c.start_at)
    seen: set[str] = set()
    rows = []
    for index, chat in enumerate(chats):
        hour = chat_stats(session, chat, "chat")
        whole = chat_stats(session, chat, "all")
        authors_hour = authors(session, chat, hour_only=True)
        authors_all = authors(session, chat)
        returning = len(authors_hour & seen)
        rows.append(
            {
                "chat": chat,
                "zone": ZoneInfo(chat.timezone),
                "start": chat.start_at,
                "participants_hour": hour["participants"],
                "participants_all": whole["participants"],
                "original_tweets": hour["original_tweets"],
                "retweets": hour["retweets"],
                "original_tweets_all": whole["original_tweets"],
                "retweets_all": whole["retweets"],
                "answers": {q["number"]: q["answers"] for q in hour["questions"]},
                "returning": returning,
                "first_time": len(authors_hour) - returning,
                "first_chat": index == 0,
            }
        )
        seen |= authors_all
    return SeriesReport(
        series=series,
        generated_at=datetime.now(UTC),
        rows=rows,
        max_questions=max((max(r["answers"], default=0) for r in rows), default=0),
    )


def series_figures(report: SeriesReport) -> list[dict[str, Any]]:
    """The series report's table as plain data (JSON and CSV)."""
    return [
        {
            "chat": row["chat"].slug,
            "title": row["chat"].title,
            "date": row["start"].astimezone(row["zone"]).date().isoformat(),
            "start": iso_time(row["start"]),
            "participants_hour": row["participants_hour"],
            "participants_all": row["participants_all"],
            "original_tweets": row["original_tweets"],
            "retweets": row["retweets"],
            "original_tweets_all": row["original_tweets_all"],
            "retweets_all": row["retweets_all"],
            **{
                f"answers_q{n}": row["answers"].get(n, 0)
                for n in range(1, report.max_questions + 1)
            },
            "first_time": row["first_time"],
            "returning": row["returning"],
        }
        for row in report.rows
    ]
