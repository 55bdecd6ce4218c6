"""The report as one self-contained HTML page: Jinja2 templates (autoescaped: post text, names and
poll labels are untrusted and always land as text), inline CSS, charts as data: URIs.

The page loads nothing: its Content-Security-Policy (in a meta tag, and as a header when served)
allows only inline styles and data: images, so it opens offline and prints to PDF as it shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.orm import Session

from app.db.models import Chat, Series
from app.links import NETWORK_NAMES
from app.report import charts
from app.report.data import (
    ChatReport,
    SeriesReport,
    build_chat_report,
    build_series_report,
)

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("app.report", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda n: f"{int(n):,}"
    env.filters["pct"] = _pct
    env.filters["share"] = lambda votes, total: f"{100 * votes / total:.1f}" if total else "0.0"
    env.filters["duration"] = _duration
    env.filters["network"] = lambda network: NETWORK_NAMES.get(network, network)
    env.globals["csp"] = CSP
    return env


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    return f"{rest} s"


def _pct(part: float, whole: float) -> str:
    if not whole:
        return "0%"
    share = 100 * part / whole
    return f"{share:.0f}%" if share >= 10 or share == 0 else f"{share:.1f}%"


def _timefmt(zone: ZoneInfo) -> Any:
    def fmt(value: Any, style: str = "time") -> str:
        """A time (datetime, pandas Timestamp or ISO string) in the chat's zone."""
        if value is None:
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        local: datetime = value.astimezone(zone)
        formats = {
            "time": "%H:%M",
            "date": "%A %-d %B %Y",
            "day": "%a %-d %b %H:%M",
            "full": "%a %-d %b %Y %H:%M %Z",
            "zone": "%Z",
        }
        return local.strftime(formats[style])

    return fmt


def _current_question(report: ChatReport, at: datetime) -> int | None:
    current = None
    for mark in sorted(report.question_marks, key=lambda m: m["at"]):
        if mark["at"].astimezone(report.zone) <= at.astimezone(report.zone):
            current = mark["number"]
    return current


def render_chat_report(report: ChatReport) -> str:
    env = _environment()
    chat = report.chat
    marks = [{**m, "at": m["at"].astimezone(report.zone)} for m in report.question_marks]
    minute_chart = charts.activity_chart(report.minutely, "minute", report.peak_minute, marks)
    hour_chart = charts.activity_chart(report.hourly, report.hour_bin, report.peak_hour)
    clouds = {q.number: charts.word_cloud(q.words, seed=q.number) for q in report.questions}
    peak_question = (
        _current_question(report, report.peak_minute["start"]) if report.peak_minute else None
    )
    template = env.get_template("chat.html")
    return template.render(
        r=report,
        chat=chat,
        hour=report.figures["chat"],
        whole=report.figures["all"],
        t=_timefmt(report.zone),
        minute_chart=minute_chart,
        hour_chart=hour_chart,
        clouds=clouds,
        peak_question=peak_question,
        questions_by_number={q.number: q for q in report.questions},
    )


def render_series_report(report: SeriesReport) -> str:
    env = _environment()
    rows = [
        {**row, "label": row["start"].astimezone(row["zone"]).strftime("%b %Y")}
        for row in report.rows
    ]
    # Two chats in one month are told apart by their day.
    labels = [row["label"] for row in rows]
    for row in rows:
        if labels.count(row["label"]) > 1:
            row["label"] = row["start"].astimezone(row["zone"]).strftime("%-d %b %Y")
    chart_list = []
    if rows:
        chart_list = [
            (
                "Participants: in the chat hour and across the collection",
                charts.series_chart(
                    rows,
                    {
                        "in the chat hour": "participants_hour",
                        "across the collection": "participants_all",
                    },
                    "participants",
                ),
            ),
            (
                "Original tweets and retweets in the chat hour",
                charts.series_chart(
                    rows,
                    {"original tweets": "original_tweets", "retweets": "retweets"},
                    "posts",
                ),
            ),
            (
                "First-time and returning participants in the chat hour",
                charts.stacked_chart(
                    rows,
                    {"first-time": "first_time", "returning": "returning"},
                    "participants",
                ),
            ),
        ]
    template = env.get_template("series.html")
    return template.render(
        r=report,
        rows=rows,
        charts=chart_list,
        questions=list(range(1, report.max_questions + 1)),
        t=_timefmt(ZoneInfo(rows[0]["chat"].timezone) if rows else ZoneInfo("UTC")),
    )


def chat_report_html(session: Session, chat: Chat) -> str:
    return render_chat_report(build_chat_report(session, chat))


def series_report_html(session: Session, series: Series) -> str:
    return render_series_report(build_series_report(session, series))
