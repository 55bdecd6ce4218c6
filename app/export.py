"""Exports of a chat that read the store: every collected post with its tags (CSV, XLSX, JSON),
and the chat's report (HTML, see app/report)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from app.db.models import Chat, ChatPost, Post, Series
from app.errors import InvalidInput
from app.stats import chat_stats, iso_time, post_object, posts_query

Format = Literal["csv", "xlsx", "json", "html"]
FORMATS: tuple[Format, ...] = ("csv", "xlsx", "json", "html")
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}

# PRODUCT.md's required columns first, then the post's network (x, mastodon, bluesky), the rest.
CSV_COLUMNS = [
    "id",
    "created_at",
    "username",
    "kind",
    "question",
    "tag_method",
    "in_reply_to_id",
    "retweets",
    "likes",
    "text",
    "network",
    "created_at_local",
    "name",
    "quoted_id",
    "retweeted_id",
    "conversation_id",
    "replies",
    "quotes",
    "impressions",
    "in_chat_window",
    "handled",
    "hidden",
    "url",
    "copy_of",
]


def chat_info(chat: Chat) -> dict[str, Any]:
    return {
        "slug": chat.slug,
        "title": chat.title,
        "hashtags": chat.hashtags,
        "hosts": chat.hosts,
        "panel": chat.panel,
        "start": iso_time(chat.start_at),
        "end": iso_time(chat.end_at),
        "timezone": chat.timezone,
        "series": chat.series.slug if chat.series else None,
        "source": chat.source,  # the X source
        "mastodon_servers": list(chat.mastodon_servers or []),
        "bluesky": bool(chat.bluesky),
        "questions": [
            {
                "number": q.number,
                "text": q.text,
                "planned_at": iso_time(q.planned_at) if q.planned_at else None,
                "post_id": q.post_id,
                "posted_at": iso_time(q.posted_at) if q.posted_at else None,
            }
            for q in chat.questions
        ],
    }


def post_rows(session: Session, chat: Chat) -> Iterator[dict[str, Any]]:
    """Every collected post of the chat, oldest first, as export rows."""
    zone = ZoneInfo(chat.timezone)
    query, _ = posts_query(chat)
    query = query.where(ChatPost.chat_id == chat.id).order_by(ChatPost.created_at, ChatPost.post_id)
    for chat_post, post, username, name, retweets in session.execute(
        query.execution_options(yield_per=1000)
    ):
        yield _row(chat, zone, chat_post, post, username, name, int(retweets))


def _row(
    chat: Chat,
    zone: ZoneInfo,
    chat_post: ChatPost,
    post: Post,
    username: str | None,
    name: str | None,
    retweets: int,
) -> dict[str, Any]:
    # The post as every other view shows it, plus what only an export needs.
    row = {
        **post_object(chat_post, post, username, name, retweets),
        "in_reply_to_id": post.in_reply_to_id,
        "created_at_local": post.created_at.astimezone(zone).isoformat(),
        "quoted_id": post.quoted_id,
        "retweeted_id": post.retweeted_id,
        "conversation_id": post.conversation_id,
        "impressions": post.impression_count,  # empty when X did not say, not 0
        "in_chat_window": chat.start_at <= post.created_at < chat.end_at,
        "handled": chat_post.handled,
        "hidden": chat_post.hidden,
        # A cross-post's copy: the id of the post it repeats (counted once, as that post).
        "copy_of": chat_post.copy_of,
    }
    return {column: row[column] for column in CSV_COLUMNS}


def check_output(output: Path, name: str, fmt: str) -> None:
    """A clear error before any work when the file cannot be written."""
    if output.is_dir():
        raise InvalidInput(f"{output} is a folder; give a file name, e.g. {output / name}.{fmt}")
    if not output.parent.exists():
        raise InvalidInput(f"cannot write {output}: the folder {output.parent} does not exist")


def write_atomically(output: Path, text: str) -> None:
    tmp = output.with_name(output.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)


def export_chat(session: Session, chat: Chat, fmt: str, output: Path) -> int:
    """Write the export; returns the number of posts it covers."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    check_output(output, chat.slug, fmt)
    if fmt == "html":
        from app.report.data import build_chat_report
        from app.report.render import render_chat_report  # the report's libraries load late

        report = build_chat_report(session, chat)
        write_atomically(output, render_chat_report(report))
        return int(report.collection["posts"])
    tmp = output.with_name(output.name + ".part")
    if fmt == "xlsx":
        count = _write_xlsx(session, chat, tmp)
    else:
        count = 0
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            if fmt == "csv":
                writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                for row in post_rows(session, chat):
                    writer.writerow({k: "" if v is None else v for k, v in row.items()})
                    count += 1
            else:
                posts = list(post_rows(session, chat))
                count = len(posts)
                document = {
                    "chat": chat_info(chat),
                    "stats": chat_stats(session, chat, "chat"),
                    "stats_all": chat_stats(session, chat, "all"),
                    "posts": posts,
                }
                json.dump(document, handle, ensure_ascii=False, indent=1)
    tmp.replace(output)  # never leave a half-written export under the real name
    return count


HEADLINE = ("participants", "original_tweets", "retweets", "replies", "quotes", "unanswered")


def _write_xlsx(session: Session, chat: Chat, path: Path) -> int:
    """A workbook: the figures, every post, a sheet per question with its answers, the polls."""
    import pandas as pd  # only exports need pandas: the server and the CLI start without it

    rows = list(post_rows(session, chat))
    posts = pd.DataFrame(rows, columns=CSV_COLUMNS)
    figures = {window: chat_stats(session, chat, window) for window in ("chat", "all")}
    headline = pd.DataFrame(
        {
            "figure": list(HEADLINE),
            "chat window": [figures["chat"][key] for key in HEADLINE],
            "all collected": [figures["all"][key] for key in HEADLINE],
        }
    )
    questions = pd.DataFrame(
        [
            {
                "question": f"Q{q['number']}",
                "text": q["text"],
                "answers (chat window)": q["answers"],
                "participants (chat window)": q["participants"],
                "answers (all)": a["answers"],
                "participants (all)": a["participants"],
            }
            for q, a in zip(figures["chat"]["questions"], figures["all"]["questions"], strict=True)
        ]
    )
    polls = pd.DataFrame(
        [
            {"poll": poll["id"], "option": o["label"], "votes": o["votes"], "share": o["share"]}
            for poll in figures["all"]["polls"]
            for o in poll["options"]
        ],
        columns=["poll", "option", "votes", "share"],
    )
    with pd.ExcelWriter(path, engine="openpyxl") as book:
        headline.to_excel(book, sheet_name="Figures", index=False)
        questions.to_excel(book, sheet_name="Figures", index=False, startrow=len(headline) + 2)
        posts.to_excel(book, sheet_name="Posts", index=False)
        for q in figures["all"]["questions"]:
            answers = posts[(posts["question"] == q["number"]) & (posts["kind"] != "retweet")]
            answers.to_excel(book, sheet_name=f"Q{q['number']}", index=False)
        polls.to_excel(book, sheet_name="Polls", index=False)
    return len(rows)


SERIES_FORMATS = ("html", "csv", "json")


def export_series(session: Session, series: Series, fmt: str, output: Path) -> int:
    """Write the series report (HTML) or its month-over-month table (CSV, JSON); returns the
    number of chats it covers."""
    from app.report.data import build_series_report, series_figures
    from app.report.render import render_series_report

    if fmt not in SERIES_FORMATS:
        raise InvalidInput(
            f"unknown series export format {fmt!r}; choose one of {', '.join(SERIES_FORMATS)}"
        )
    check_output(output, series.slug, fmt)
    report = build_series_report(session, series)
    if fmt == "html":
        write_atomically(output, render_series_report(report))
    elif fmt == "json":
        document = {"series": series.slug, "title": series.title, "chats": series_figures(report)}
        write_atomically(output, json.dumps(document, ensure_ascii=False, indent=1))
    else:
        rows = series_figures(report)
        buffer = io.StringIO()
        columns = list(rows[0]) if rows else ["chat", "title", "date"]
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(output, buffer.getvalue())
    return len(report.rows)
