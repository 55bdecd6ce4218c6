"""The report's charts: Altair specifications rendered to SVG by vl-convert, offline, and the
word clouds drawn by wordcloud; both embedded in the page as data: URIs (nothing is fetched).

Times are drawn as the chat's local wall-clock time: they are handed to Vega as UTC values of
that wall clock and drawn on a UTC scale, so the machine's own time zone never shifts them.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.report.words import Ranked

if TYPE_CHECKING:
    import altair as alt

KINDS = ["original tweets", "retweets"]
COLORS = ["#1f5fa8", "#9cc3e6"]
WIDTH = 680
FONT = "Helvetica, Arial, sans-serif"


def _wall(value: datetime) -> str:
    """A local time as the 'UTC' string Vega draws on a UTC scale."""
    return value.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows)


def svg_uri(chart: alt.TopLevelMixin) -> str:
    import vl_convert as vlc

    svg = vlc.vegalite_to_svg(chart.to_json())
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _configure(chart: Any) -> Any:
    return (
        chart.configure(font=FONT)
        .configure_view(stroke=None)
        .configure_axis(labelFontSize=11, titleFontSize=12, grid=False)
        .configure_legend(orient="top", title=None, labelFontSize=12)
    )


def _long(bins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"t": _wall(b["start"]), "kind": kind, "posts": b[kind], "order": i}
        for b in bins
        for i, kind in enumerate(KINDS)
    ]


def activity_chart(
    bins: list[dict[str, Any]],
    unit: str,
    peak: dict[str, Any] | None,
    marks: list[dict[str, Any]] | None = None,
) -> str:
    """Stacked bars of originals and retweets per `unit` ("minute", "hour" or "day"), the peak
    marked, and (per minute) the questions' start as rules."""
    import altair as alt

    time_format = {"minute": "%H:%M", "hour": "%a %d %b %H:%M", "day": "%d %b"}[unit]
    time_unit = {"minute": "utcyearmonthdatehoursminutes", "hour": "utcyearmonthdatehours"}.get(
        unit, "utcyearmonthdate"
    )
    x = alt.X(
        f"{time_unit}(t):T",
        title=None,
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(format=time_format, labelAngle=0, tickCount=8, labelOverlap=True),
    )
    bars = (
        alt.Chart(_frame(_long(bins)))
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("sum(posts):Q", title=f"posts per {unit}", stack="zero"),
            color=alt.Color("kind:N", scale=alt.Scale(domain=KINDS, range=COLORS), sort=KINDS),
            order=alt.Order("order:Q"),
        )
    )
    layers: list[Any] = [bars]
    if marks:
        rows = [{"t": _wall(m["at"]), "label": f"Q{m['number']}"} for m in marks]
        rule_x = alt.X("t:T", scale=alt.Scale(type="utc"))
        layers.append(
            alt.Chart(_frame(rows)).mark_rule(color="#888", strokeDash=[3, 3]).encode(x=rule_x)
        )
        layers.append(
            alt.Chart(_frame(rows))
            .mark_text(align="left", dx=3, dy=-4, baseline="top", color="#555", fontSize=11)
            .encode(x=rule_x, y=alt.value(0), text="label:N")
        )
    if peak:
        label = f"peak {peak['start'].strftime(time_format.replace('%a ', ''))}: {peak['total']}"
        row = [{"t": _wall(peak["start"]), "total": peak["total"], "label": label}]
        peak_x = alt.X(f"{time_unit}(t):T", scale=alt.Scale(type="utc"))
        layers.append(
            alt.Chart(_frame(row))
            .mark_point(shape="triangle-down", filled=True, color="#c0392b", size=70, yOffset=-8)
            .encode(x=peak_x, y=alt.Y("total:Q"))
        )
        layers.append(
            alt.Chart(_frame(row))
            .mark_text(color="#c0392b", dy=-20, fontSize=12, fontWeight="bold")
            .encode(x=peak_x, y=alt.Y("total:Q"), text="label:N")
        )
    chart = alt.layer(*layers).properties(width=WIDTH, height=190)
    return svg_uri(_configure(chart))


def series_chart(rows: list[dict[str, Any]], fields: dict[str, str], title: str) -> str:
    """Month over month: one line per field (label -> key of the row), a point per chat."""
    import altair as alt

    values = [
        {"chat": row["label"], "order": i, "figure": label, "value": row[key]}
        for i, row in enumerate(rows)
        for label, key in fields.items()
    ]
    labels = [row["label"] for row in rows]
    chart = (
        alt.Chart(_frame(values))
        .mark_line(point=alt.OverlayMarkDef(size=60))
        .encode(
            x=alt.X("chat:N", sort=labels, title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("value:Q", title=title),
            color=alt.Color(
                "figure:N",
                scale=alt.Scale(domain=list(fields), range=["#1f5fa8", "#e08e2b", "#6aa84f"]),
                sort=list(fields),
            ),
        )
        .properties(width=WIDTH, height=200)
    )
    text = (
        alt.Chart(_frame(values))
        .mark_text(dy=-10, fontSize=11, color="#333")
        .encode(
            x=alt.X("chat:N", sort=labels),
            y="value:Q",
            text="value:Q",
            detail="figure:N",
        )
    )
    return svg_uri(_configure(alt.layer(chart, text)))


def stacked_chart(rows: list[dict[str, Any]], fields: dict[str, str], title: str) -> str:
    """Month over month: stacked bars of the fields (e.g. first-time and returning)."""
    import altair as alt

    values = [
        {"chat": row["label"], "figure": label, "value": row[key], "order": j}
        for row in rows
        for j, (label, key) in enumerate(fields.items())
    ]
    labels = [row["label"] for row in rows]
    chart = (
        alt.Chart(_frame(values))
        .mark_bar()
        .encode(
            x=alt.X("chat:N", sort=labels, title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("sum(value):Q", title=title, stack="zero"),
            color=alt.Color(
                "figure:N",
                scale=alt.Scale(domain=list(fields), range=["#e08e2b", "#1f5fa8"]),
                sort=list(fields),
            ),
            order=alt.Order("order:Q"),
        )
        .properties(width=WIDTH, height=200)
    )
    return svg_uri(_configure(chart))


def word_cloud(words: list[Ranked], seed: int) -> str | None:
    """A word cloud (PNG data URI) of the ranked words, or None when there are too few."""
    if len(words) < 3:
        return None
    from wordcloud import WordCloud

    cloud = WordCloud(
        width=1000,
        height=380,
        background_color="white",
        prefer_horizontal=0.95,
        random_state=seed,  # the same chat gives the same picture
        min_font_size=14,
        relative_scaling=0.6,
        margin=6,
        # Shades of the report's blue, never too pale to read on paper.
        color_func=lambda *args, **kwargs: _shade(kwargs.get("font_size", 20)),
    )
    cloud.generate_from_frequencies({w.text: w.answers for w in words})
    buffer = io.BytesIO()
    cloud.to_image().save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _shade(font_size: int) -> str:
    if font_size >= 60:
        return "rgb(20, 66, 120)"
    if font_size >= 35:
        return "rgb(31, 95, 168)"
    return "rgb(80, 130, 190)"
