"""The `tweetchat` command line: thin commands over the library functions.

Every command reads its settings from the environment (`TWEETCHAT_DATABASE_URL`, ...) and the
`.env` file, upgrades the database schema on start, and turns a domain error into one line on
stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from app import __version__
from app.chats import (
    ChatSources,
    create_chat,
    get_chat,
    get_series,
    list_chats,
    parse_question_spec,
    parse_when,
    parse_zone,
    split_list,
)
from app.config import Settings
from app.db.engine import open_database
from app.errors import InvalidInput, TweetchatError
from app.export import FORMATS, SERIES_FORMATS, export_chat, export_series
from app.ingest.importer import ImportReport, import_files
from app.panel import create_panel_token
from app.process import tune_gc
from app.stats import WINDOWS, chat_stats, check_window

if TYPE_CHECKING:
    from app.api import StartupHook
    from app.live.hub import LiveHub

app = typer.Typer(
    name="tweetchat",
    help="Collect, tag and count hashtag tweetchats; show them live; report afterwards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
chat_app = typer.Typer(help="Create and list chats.", no_args_is_help=True)
app.add_typer(chat_app, name="chat")
series_app = typer.Typer(help="Report on a series of chats.", no_args_is_help=True)
app.add_typer(series_app, name="series")
people_app = typer.Typer(
    help="Link a person's accounts across networks: they count once, cross-posts show once.",
    no_args_is_help=True,
)
app.add_typer(people_app, name="people")

T = TypeVar("T")
MAX_ERRORS_SHOWN = 20


def _console() -> Console:
    return Console(highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def fail(message: str) -> None:
    _stderr().print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def handled_errors() -> Iterator[None]:
    try:
        yield
    except TweetchatError as exc:
        fail(exc.message)
    except ValidationError as exc:
        problems = "; ".join(
            f"TWEETCHAT_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        fail(f"invalid configuration: {problems}")


@contextmanager
def database() -> Iterator[sessionmaker[Session]]:
    """Sessions on the configured database, its schema brought up to date first."""
    settings = Settings()
    engine, sessions = open_database(settings.database_url)
    try:
        yield sessions
    finally:
        engine.dispose()


def run(action: Callable[[], T]) -> T:
    with handled_errors():
        return action()
    raise AssertionError("unreachable")  # fail() always raises


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tweetchat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Collect, tag and count hashtag tweetchats; show them live; report afterwards."""


@chat_app.command("create")
def chat_create(
    slug: Annotated[str, typer.Argument(help="Short name used in URLs, e.g. leadingqi-2023-03.")],
    title: Annotated[str, typer.Option(help="The chat's title.")],
    hashtags: Annotated[str, typer.Option(help="Comma-separated: '#LeadingQI,#QIHour'.")],
    host: Annotated[
        list[str],
        typer.Option(
            help="Host account(s), repeat or comma-separate: an X username (WarwickBSchool), a "
            "Mastodon handle (wbs@mastodon.social) or a Bluesky handle (wbs.bsky.social)."
        ),
    ],
    start: Annotated[
        str, typer.Option(help="Chat start, ISO 8601 with zone: 2023-03-28T18:00:00Z.")
    ],
    end: Annotated[str, typer.Option(help="Chat end (exclusive): 2023-03-28T19:00:00Z.")],
    panel: Annotated[
        list[str] | None,
        typer.Option(help="Panel accounts, comma-separated, on any network like --host: a,b,c."),
    ] = None,
    series: Annotated[str | None, typer.Option(help="Series slug, e.g. leadingqi.")] = None,
    source: Annotated[
        str,
        typer.Option(
            help="X source: x-search, x-stream or none (no X: imports only, unless --mastodon "
            "or --bluesky follow the chat)."
        ),
    ] = "none",
    mastodon: Annotated[
        list[str] | None,
        typer.Option(
            help="Mastodon servers whose hashtag timelines to follow, repeat or comma-separate: "
            "mastodon.social,fosstodon.org. A user token per server, from "
            "TWEETCHAT_MASTODON_TOKEN_<HOST> (TWEETCHAT_MASTODON_TOKEN_MASTODON_SOCIAL), makes "
            "it stream instead of poll."
        ),
    ] = None,
    bluesky: Annotated[
        bool,
        typer.Option(
            "--bluesky",
            help="Follow the chat on Bluesky too (public search; TWEETCHAT_BLUESKY_IDENTIFIER and "
            "TWEETCHAT_BLUESKY_APP_PASSWORD if the public endpoint refuses).",
        ),
    ] = False,
    timezone: Annotated[
        str, typer.Option(help="The chat's local time zone, for planned times and exports.")
    ] = "UTC",
    question: Annotated[
        list[str] | None,
        typer.Option(
            help="A question of the run of show, repeat in order (Q1, Q2, ...); an optional "
            'leading HH:MM is its planned time in --timezone: "18:05 Let\'s start with a poll!".'
        ),
    ] = None,
) -> None:
    """Create a chat.

    Example: tweetchat chat create leadingqi-2023-03 --title "Leaders show the way"
    --hashtags '#LeadingQI,#QIHour' --host WarwickBSchool --panel HelenBevan,BryanJns
    --start 2023-03-28T18:00:00Z --end 2023-03-28T19:00:00Z --timezone Europe/London
    --question "19:02 Let's start with a poll!" --question "19:10 Why is it important ...?"

    Beside X (--source), a chat may follow Mastodon servers and Bluesky: --source x-search
    --mastodon mastodon.social,fosstodon.org --bluesky --host WarwickBSchool,wbs@mastodon.social
    """

    def action() -> None:
        start_at = parse_when(start, "--start")
        end_at = parse_when(end, "--end")
        zone = parse_zone(timezone)
        plans = [
            parse_question_spec(spec, number, start_at, zone)
            for number, spec in enumerate(question or [], start=1)
        ]
        with database() as sessions, sessions.begin() as session:
            chat = create_chat(
                session,
                slug=slug,
                title=title,
                hashtags=split_list(hashtags),
                hosts=split_list(host),
                panel=split_list(panel),
                start=start_at,
                end=end_at,
                series=series,
                source=source,
                mastodon=split_list(mastodon),
                bluesky=bluesky,
                timezone=timezone,
                questions=plans,
            )
            _console().print(
                f"Created chat {chat.slug}: {', '.join(chat.hashtags)}, "
                f"{chat.start_at:%Y-%m-%d %H:%M}–{chat.end_at:%H:%M} UTC, "
                f"{len(plans)} question(s); sources: {ChatSources.of(chat).describe()}.",
                markup=False,
                soft_wrap=True,
            )

    run(action)


@chat_app.command("list")
def chat_list() -> None:
    """List the chats, newest first."""

    def action() -> None:
        with database() as sessions, sessions() as session:
            chats = list_chats(session)
            if not chats:
                _console().print("No chats yet. Create one with `tweetchat chat create`.")
                return
            table = Table("slug", "title", "hashtags", "start (UTC)", "end (UTC)", "sources")
            for chat in chats:
                table.add_row(
                    chat.slug,
                    chat.title,
                    " ".join(chat.hashtags),
                    f"{chat.start_at:%Y-%m-%d %H:%M}",
                    f"{chat.end_at:%Y-%m-%d %H:%M}",
                    escape(ChatSources.of(chat).describe()),
                )
            _console().print(table)

    run(action)


@chat_app.command("show")
def chat_show(slug: Annotated[str, typer.Argument(help="The chat's slug.")]) -> None:
    """Show a chat's settings and run of show."""

    def action() -> None:
        with database() as sessions, sessions() as session:
            chat = get_chat(session, slug)
            console = _console()
            console.print(f"[bold]{chat.title}[/] ({chat.slug})")
            console.print(f"hashtags: {' '.join(chat.hashtags)}")
            console.print(f"hosts: {', '.join(chat.hosts)}  panel: {', '.join(chat.panel) or '-'}")
            console.print(f"window: {chat.start_at:%Y-%m-%d %H:%M} – {chat.end_at:%H:%M} UTC")
            sources = ChatSources.of(chat)
            console.print(f"X: {sources.x}", markup=False)
            console.print(f"Mastodon: {', '.join(sources.mastodon) or '-'}", markup=False)
            console.print(f"Bluesky: {'yes' if sources.bluesky else 'no'}", markup=False)
            for q in chat.questions:
                when = f"{q.planned_at:%H:%M} UTC" if q.planned_at else "--:--"
                seen = f" (posted {q.posted_at:%H:%M}, id {q.post_id})" if q.posted_at else ""
                console.print(f"  Q{q.number} {when} {q.text}{seen}", markup=False)

    run(action)


@app.command("import")
def import_(
    slug: Annotated[str, typer.Argument(help="The chat to import into.")],
    files: Annotated[list[Path], typer.Argument(help="Archive files (.jsonl, .json, .gz).")],
    mastodon_server: Annotated[
        str | None,
        typer.Option(
            "--mastodon-server",
            metavar="HOST",
            help="The Mastodon server the statuses were read from (mastodon.social): the domain "
            "of its local accounts' handles. Without it, each local account's profile URL "
            "tells it.",
        ),
    ] = None,
) -> None:
    """Import archives of X, Mastodon and Bluesky posts, in any mix.

    Files: one JSON object a line, or one JSON document (or a list of them); .gz too.
    X: API v2 response pages, twarc2 JSONL, stream messages, single tweets.
    Mastodon: Status entities, or lists of them (a tag timeline page).
    Bluesky: post views, or searchPosts answers ({"posts": [...]}).

    Example: tweetchat import leadingqi-2023-03 tweets.jsonl statuses.json bsky.json

    Every post of a file is collected for the chat; importing a file twice adds nothing.
    Bad lines (and bad posts in them) are reported with file and line, and skipped.
    """

    def action() -> ImportReport:
        total = sum(path.stat().st_size for path in files if path.is_file())
        show = total > 2_000_000 and _stderr().is_terminal
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=_stderr(),
            transient=True,
            disable=not show,
        ) as progress:
            task = progress.add_task("importing", total=total or 1)
            done: dict[str, int] = {}

            def on_progress(name: str, current: int, _total: int) -> None:
                done[name] = current
                progress.update(task, completed=sum(done.values()), description=Path(name).name)

            with database() as sessions:
                return import_files(
                    sessions,
                    slug=slug,
                    paths=files,
                    on_progress=on_progress,
                    mastodon_server=mastodon_server,
                )

    report = run(action)
    console = _console()
    for error in report.errors[:MAX_ERRORS_SHOWN]:
        _stderr().print(f"skipped {error}", markup=False, soft_wrap=True)
    if len(report.errors) > MAX_ERRORS_SHOWN:
        _stderr().print(f"... and {len(report.errors) - MAX_ERRORS_SHOWN} more bad lines skipped")
    console.print(
        f"Imported {report.newly_collected} new post(s) into {slug} from {len(report.files)} "
        f"file(s) ({report.already_collected} already collected, {report.new_context} context "
        f"post(s), {report.users} account(s), {report.polls} poll(s)); "
        f"{len(report.errors)} bad line(s) skipped.",
        soft_wrap=True,
    )
    if report.unlinked:
        console.print(
            f"{report.unlinked} Mastodon reply(ies) or quote(s) point at a status in none of the "
            "files (Mastodon names it by the server's own id): stored without their parent; "
            "import the parents' statuses in the same run to link them.",
            soft_wrap=True,
        )
    if report.newly_collected == 0 and report.posts_in_data == 0:
        fail("the files hold no posts to import")


@app.command("stats")
def stats(
    slug: Annotated[str, typer.Argument(help="The chat.")],
    window: Annotated[
        str, typer.Option(help="chat: the chat window only; all: every collected post.")
    ] = "chat",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Print a chat's figures (PRODUCT.md's definitions).

    Example: tweetchat stats leadingqi-2023-03 --window all --json
    """

    def action() -> dict[str, Any]:
        chosen = check_window(window)
        with database() as sessions, sessions() as session:
            return chat_stats(session, get_chat(session, slug), chosen)

    figures = run(action)
    if as_json:
        sys.stdout.write(json.dumps(figures, ensure_ascii=False, indent=2) + "\n")
        return
    _print_stats(figures)


def _print_stats(figures: dict[str, Any]) -> None:
    console = _console()
    window = "the chat window" if figures["window"] == "chat" else "all collected posts"
    headline = Table(title=f"{figures['chat']}: {window}", show_header=False)
    for label, key in (
        ("participants", "participants"),
        ("original tweets", "original_tweets"),
        ("retweets", "retweets"),
        ("replies", "replies"),
        ("quotes", "quotes"),
        ("unanswered answers", "unanswered"),
    ):
        headline.add_row(label, f"{figures[key]:,}")
    console.print(headline)
    if figures["questions"]:
        questions = Table("question", "answers", "participants", "top answer")
        for q in figures["questions"]:
            top = q["top"][0] if q["top"] else None
            questions.add_row(
                f"Q{q['number']} {q['text'][:60]}",
                f"{q['answers']:,}",
                f"{q['participants']:,}",
                f"@{top['username']} ({top['retweets']} RT, {top['likes']} likes)" if top else "-",
            )
        console.print(questions)
    if figures["top_tweets"]:
        top = Table("#", "author", "retweets", "likes", "text", title="top tweets")
        for rank, post in enumerate(figures["top_tweets"][:5], start=1):
            top.add_row(
                str(rank),
                f"@{post['username']}",
                f"{post['retweets']:,}",
                f"{post['likes']:,}",
                post["text"][:80].replace("\n", " "),
            )
        console.print(top)
    for poll in figures["polls"]:
        table = Table(
            "option", "votes", "share", title=f"poll {poll['id']} ({poll['total']} votes)"
        )
        for option in poll["options"]:
            table.add_row(option["label"], f"{option['votes']:,}", f"{option['share']:.1%}")
        console.print(table)


@app.command("export")
def export(
    slug: Annotated[str, typer.Argument(help="The chat.")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of: {', '.join(FORMATS)}.")],
    output: Annotated[Path, typer.Option(help="The file to write.")],
) -> None:
    """Export every collected post with its question tag (csv, xlsx, json), or the chat's
    report (html: one self-contained page with the figures, charts, questions and threads).

    Example: tweetchat export leadingqi-2023-03 --format csv --output posts.csv

    Example: tweetchat export leadingqi-2023-03 --format html --output report.html
    """

    def action() -> int:
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        with database() as sessions, sessions() as session:
            return export_chat(session, get_chat(session, slug), fmt, output)

    count = run(action)
    if fmt == "html":
        _console().print(f"Wrote the report of {count} post(s) to {output}.")
    else:
        _console().print(f"Wrote {count} post(s) to {output}.")


@series_app.command("report")
def series_report(
    slug: Annotated[str, typer.Argument(help="The series (as given to chat create --series).")],
    output: Annotated[Path, typer.Option(help="The file to write.")],
    fmt: Annotated[
        str, typer.Option("--format", help=f"One of: {', '.join(SERIES_FORMATS)}.")
    ] = "html",
) -> None:
    """The month-over-month report of a series of chats: participants in the hour and across
    each chat's collection, original tweets, retweets, answers per question, first-time and
    returning participants (html), or its table (csv, json).

    Example: tweetchat series report leadingqi-2023 --output series.html
    """

    def action() -> int:
        with database() as sessions, sessions() as session:
            return export_series(session, get_series(session, slug), fmt, output)

    count = run(action)
    _console().print(f"Wrote the report of {count} chat(s) of {slug} to {output}.")


@app.command("panel-token")
def panel_token(
    slug: Annotated[str, typer.Argument(help="The chat.")],
    name: Annotated[str, typer.Option(help="Who the token is for, shown on claims.")],
) -> None:
    """Create a panel member's token for a chat (printed once; only its hash is kept).

    Example: tweetchat panel-token leadingqi-2023-03 --name Helen
    """

    def action() -> str:
        with database() as sessions, sessions.begin() as session:
            return create_panel_token(session, slug=slug, name=name)

    token = run(action)
    _console().print(f"Panel token for {name} on {slug} (shown once):", soft_wrap=True)
    sys.stdout.write(token + "\n")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the API and the live updates, and follow every chat whose window is open.

    Example: TWEETCHAT_DATABASE_URL=postgresql://db/tweetchat tweetchat serve --host 0.0.0.0
    """
    with handled_errors():
        settings = Settings()
        # Open (and upgrade) the database once here so that a bad URL fails before listening.
        with database():
            pass
    _run_server(settings, host, port)


def _run_server(
    settings: Settings,
    host: str,
    port: int,
    on_startup: StartupHook | None = None,
    log_level: str = "info",
) -> None:
    import uvicorn

    from app.api import create_app

    tune_gc()
    uvicorn.run(
        create_app(settings, on_startup=on_startup),
        host=host,
        port=port,
        log_level=log_level,
        ws_per_message_deflate=settings.ws_per_message_deflate,
    )


@app.command("replay")
def replay(
    slug: Annotated[str, typer.Argument(help="The chat to play the archive into.")],
    file: Annotated[Path, typer.Argument(help="An archive, as for `tweetchat import`.")],
    speed: Annotated[
        float,
        typer.Option(min=0.01, help="Simulated seconds per real second (60: an hour a minute)."),
    ] = 60.0,
    max_gap: Annotated[
        float, typer.Option(min=0.0, help="Longest real wait between two posts, in seconds.")
    ] = 5.0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    mastodon_server: Annotated[
        str | None,
        typer.Option(
            "--mastodon-server",
            metavar="HOST",
            help="As for `tweetchat import`: the Mastodon server the statuses were read from.",
        ),
    ] = None,
) -> None:
    """Play an archive into a chat as if live, and serve it while it plays.

    Example: tweetchat replay leadingqi-2023-03 tweets.jsonl --speed 60

    Posts already collected are not counted twice; a replay stopped and started again carries on
    from the last post it released.
    """
    from app.sources.replay import load_timeline

    def action() -> tuple[Settings, Any]:
        settings = Settings()
        with database() as sessions, sessions() as session:
            get_chat(session, slug)
        return settings, load_timeline(file, mastodon_server=mastodon_server)

    settings, timeline = run(action)
    for error in timeline.errors[:MAX_ERRORS_SHOWN]:
        _stderr().print(f"skipped {error}", markup=False, soft_wrap=True)

    async def start(hub: LiveHub) -> None:
        await hub.start_replay(slug, timeline, speed=speed, max_gap=max_gap)

    _print_urls(
        slug, host, port, f"Replaying {len(timeline.posts)} posts into {slug} at {speed:g}x."
    )
    _run_server(settings, host, port, start)


def _print_urls(
    slug: str, host: str, port: int, headline: str, panel_token: str | None = None
) -> None:
    base = f"http://{host}:{port}"
    console = _console()
    console.print(headline, soft_wrap=True)
    console.print(f"Figures:      {base}/api/chats/{slug}/stats", soft_wrap=True)
    console.print(f"Live updates: ws://{host}:{port}/ws/chats/{slug}", soft_wrap=True)
    if panel_token:
        console.print(
            f"Panel:        {base}/chats/{slug}/panel (token {panel_token})", soft_wrap=True
        )
    else:
        console.print(f"Panel:        {base}/chats/{slug}/panel", soft_wrap=True)
    console.print(f"Report:       {base}/chats/{slug}/report", soft_wrap=True)
    console.print(f"Open {base}/chats/{slug}/screen", soft_wrap=True)


@app.command("demo")
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    speed: Annotated[float, typer.Option(min=0.01, help="Replay speed.")] = 20.0,
    database_file: Annotated[
        Path, typer.Option(help="The SQLite file for the demo; it is recreated on each run.")
    ] = Path("tweetchat-demo.db"),
) -> None:
    """Create the built-in demo chat in a fresh SQLite file, replay it live, and serve it.

    Example: tweetchat demo --port 8080

    At the default speed the chat's hour plays in three minutes.
    """
    from app.demo import DEMO_ARCHIVE, create_demo_chat
    from app.sources.replay import load_timeline

    url = f"sqlite:///{database_file.resolve()}"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database_file}{suffix}").unlink(missing_ok=True)

    def action() -> tuple[str, str, Any]:
        engine, sessions = open_database(url)
        try:
            with sessions.begin() as session:
                slug = create_demo_chat(session)
                token = create_panel_token(session, slug=slug, name="Demo panel")
        finally:
            engine.dispose()
        return slug, token, load_timeline(DEMO_ARCHIVE)

    slug, token, timeline = run(action)

    async def start(hub: LiveHub) -> None:
        await hub.start_replay(slug, timeline, speed=speed, max_gap=2.0)

    _print_urls(
        slug,
        host,
        port,
        f"Demo chat {slug} ({database_file}): replaying {len(timeline.posts)} posts at {speed:g}x.",
        panel_token=token,
    )
    # Quiet server logs: the demo's output ends with the URL to open.
    _run_server(Settings(database_url=url), host, port, start, log_level="warning")


AccountsArg = Annotated[
    list[str],
    typer.Argument(
        help="Accounts: x:HelenBevan or @HelenBevan (X), helen@mastodon.social (Mastodon), "
        "helen.bsky.social (Bluesky), or NETWORK:ID.",
        show_default=False,
    ),
]


def _print_person(person: dict[str, Any] | None) -> None:
    if person is None:
        return
    accounts = ", ".join(a["label"] for a in person["accounts"])
    _console().print(f"{escape(person['person'])}: {escape(accounts)}", soft_wrap=True)


def _announce_reload(slugs: list[str]) -> None:
    """Tell running servers to read these chats again (through Redis; without it, a server
    shows the change when it next loads the chat)."""
    import asyncio

    from app.people import announce_reload

    if not slugs:
        return
    _console().print(f"Figures worked out again for: {escape(', '.join(slugs))}.", soft_wrap=True)
    settings = Settings()
    if settings.redis_url:
        asyncio.run(announce_reload(settings, slugs))
        _console().print("Running servers were told to reload them.")
    else:
        _console().print(
            "A running server shows this once it reloads the chat (restart it, or link through "
            "the admin API, POST /api/people/links, which reloads open chats at once)."
        )


@people_app.command("link")
def people_link(accounts: AccountsArg) -> None:
    """Link accounts as one person (with those already linked to any of them): they count as
    one participant, and their cross-posts are shown and counted once."""
    from app.people import link

    def action() -> tuple[dict[str, Any] | None, list[str]]:
        with database() as sessions, sessions.begin() as session:
            result = link(session, accounts)
            return result.person, result.chats

    person, chats = run(action)
    _console().print("Linked as one person:")
    _print_person(person)
    _announce_reload(chats)


@people_app.command("unlink")
def people_unlink(accounts: AccountsArg) -> None:
    """Take accounts out of the person they are linked to: each counts on its own again."""
    from app.people import unlink

    def action() -> list[str]:
        with database() as sessions, sessions.begin() as session:
            return unlink(session, accounts).chats

    chats = run(action)
    _console().print(f"Unlinked: {escape(', '.join(accounts))}.", soft_wrap=True)
    _announce_reload(chats)


@people_app.command("list")
def people_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The linked people and their accounts."""
    from app.people import people

    def action() -> list[dict[str, Any]]:
        with database() as sessions, sessions() as session:
            return people(session)

    found = run(action)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        _console().print("No accounts are linked.")
    for person in found:
        _print_person(person)


def main() -> None:
    app()


if __name__ == "__main__":
    main()


__all__ = ["WINDOWS", "app", "main"]
