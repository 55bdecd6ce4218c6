"""The pages in a real browser (Debian's Chromium, driven by Playwright) against the real server on
loopback: the big screen follows a replayed chat with the API's counts, panel actions reach the
other pages, the screen comes back after a server restart, untrusted text never runs, a page
without a valid credential changes nothing, and the index links each chat's pages."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect
from sqlalchemy import create_engine, text

from app.config import Settings
from app.ingest.parse import parse_object
from app.sources.base import SourceBatch
from app.sources.replay import load_timeline
from tests.browser import ADMIN, PageServer, browser_page, launch_chromium
from tests.conftest import FIXTURES
from tests.helpers import make_cli_runner
from tests.test_live import create_chat

QI = FIXTURES / "qi-chat.jsonl"
FIGURES = ("participants", "original_tweets", "retweets", "replies")
A3_CATH = "1640781366613966848"  # an unanswered answer to Q3 (@ward7_sister)
WALL_POST = "#wall > .post[data-id]"
# A post waits its turn to enter the wall (one every 0.3–1.5 s): after a burst it can take a while.
WALL_WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as chromium:
        yield chromium


def prepare(url: str, *, imported: bool, slugs: tuple[str, ...] = ("qi",)) -> None:
    cli = make_cli_runner(url)
    for slug in slugs:
        create_chat(cli, slug)
    if imported:
        result = cli("import", "qi", str(QI))
        assert result.exit_code == 0, result.output


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    return Settings(database_url=sqlite_url, admin_token=ADMIN)


def feed(server: PageServer, tweets: list[dict[str, Any]], **includes: Any) -> None:
    """Collect `tweets` as a live source would, and wait until they are stored and counted."""
    hub = server.hub
    assert hub is not None
    parsed = parse_object({"data": tweets, "includes": includes})

    async def go() -> None:
        runtime = await hub.runtime("qi")
        await runtime.emit(SourceBatch("replay", parsed))
        await runtime.drained()

    server.call(go())


def tweet(post_id: str, text: str, author: str = "7001", minute: int = 58) -> dict[str, Any]:
    return {
        "id": post_id,
        "author_id": author,
        "created_at": f"2023-03-28T18:{minute:02d}:00.000Z",
        "text": text,
    }


NEWCOMER = {"id": "7001", "username": "newcomer_nhs", "name": "Newcomer NHS"}


def figures_on(page: Page) -> dict[str, str]:
    return {name: page.locator(f'[data-figure="{name}"]').inner_text() for name in FIGURES}


def expect_figures(page: Page, stats: dict[str, Any]) -> None:
    for name in FIGURES:
        expect(page.locator(f'[data-figure="{name}"]')).to_have_text(str(stats[name]))


# ---- 1. the big screen follows a replay with the API's figures ----------------------------------


def test_screen_counts_equal_the_api_during_a_replay(
    browser: Browser, sqlite_url: str, settings: Settings
) -> None:
    prepare(sqlite_url, imported=False)
    timeline = load_timeline(QI)
    with PageServer(settings) as server, browser_page(browser, width=1920, height=1080) as page:
        page.goto(f"{server.url}/chats/qi/screen")
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
        expect(page.locator('[data-figure="original_tweets"]')).to_have_text("0")
        hub = server.hub
        assert hub is not None
        task = server.call(hub.start_replay("qi", timeline, speed=1e6, max_gap=0.002))

        async def finished() -> None:
            await task
            await (await hub.runtime("qi")).drained()

        server.call(finished())
        stats = server.get("/api/chats/qi/stats?window=chat")
        assert stats["original_tweets"] > 100 and stats["participants"] > 10
        expect_figures(page, stats)
        expect(page.locator("#chat-hashtags")).to_have_text("#LeadingQI #QIHour")
        expect(page.locator("#question")).to_have_attribute("data-number", "6")
        expect(page.locator("#per-minute svg rect").first).to_be_attached()
        # Posts of the replay reach the wall, and only collected posts do.
        expect(page.locator(WALL_POST).first).to_be_attached(timeout=WALL_WAIT_MS)
        ids = {p.id for p in timeline.posts}
        assert set(page.locator(WALL_POST).evaluate_all("ns => ns.map(n => n.dataset.id)")) <= ids

        # One more post collected: on the wall with its text, and counted as the API counts it.
        feed(
            server,
            [tweet("1640790000000000001", "A6: celebrate small wins #LeadingQI")],
            users=[NEWCOMER],
        )
        fresh = page.locator('#wall > .post[data-id="1640790000000000001"]')
        expect(fresh).to_be_visible(timeout=WALL_WAIT_MS)
        expect(fresh.locator(".post__text")).to_have_text("A6: celebrate small wins #LeadingQI")
        expect(fresh.locator(".post__name")).to_have_text("Newcomer NHS")
        after = server.get("/api/chats/qi/stats?window=chat")
        assert after["original_tweets"] == stats["original_tweets"] + 1
        expect_figures(page, after)
        # No scrollbars on the big screen.
        assert page.evaluate(
            "() => document.documentElement.scrollHeight <= innerHeight"
            " && document.documentElement.scrollWidth <= innerWidth"
        )


def test_the_screen_shows_the_chat_top_tweets_beside_a_poll(
    browser: Browser, sqlite_url: str, settings: Settings
) -> None:
    """With a poll on screen there is no room for the chat's top tweets at 1280x720: the side
    column shows them in turn (every `?rotate=` seconds)."""
    prepare(sqlite_url, imported=True)
    with PageServer(settings) as server, browser_page(browser, width=1280, height=720) as page:
        page.goto(f"{server.url}/chats/qi/screen?rotate=1")
        stats = server.get("/api/chats/qi/stats?window=chat")
        assert stats["polls"] and stats["top_tweets"]
        expect(page.locator("#polls-box")).to_be_visible()
        first = page.locator(f'#top-tweets .compact[data-id="{stats["top_tweets"][0]["id"]}"]')
        expect(first).to_be_visible(timeout=5000)
        expect(page.locator("#polls-box")).to_be_hidden()
        expect(page.locator("#polls-box")).to_be_visible(timeout=5000)  # and back


def test_the_screen_on_a_phone_is_one_column_that_scrolls(
    browser: Browser, sqlite_url: str, settings: Settings
) -> None:
    """The big screen's link may go to participants: on a phone the screen is one column at a
    readable size that scrolls, with the whole question, every figure's label, and the poll and
    the top tweets together (no room to rotate for)."""
    prepare(sqlite_url, imported=True)
    with PageServer(settings) as server, browser_page(browser, width=390, height=844) as page:
        page.goto(f"{server.url}/chats/qi/screen?rotate=1")
        stats = server.get("/api/chats/qi/stats?window=chat")
        expect_figures(page, stats)
        first = page.locator(f'#top-tweets .compact[data-id="{stats["top_tweets"][0]["id"]}"]')
        expect(first).to_be_visible()
        page.wait_for_timeout(2500)  # two rotation periods: nothing is swapped out
        expect(page.locator("#polls-box")).to_be_visible()
        expect(first).to_be_visible()
        layout = page.evaluate(
            """() => {
              const box = (sel) => document.querySelector(sel).getBoundingClientRect();
              const question = document.querySelector("#question-text");
              return {
                scrollWidth: document.documentElement.scrollWidth,
                scrollHeight: document.documentElement.scrollHeight,
                fontSize: parseFloat(getComputedStyle(document.documentElement).fontSize),
                questionClipped: question.scrollHeight > question.clientHeight + 1,
                questionText: question.textContent,
                labelsClipped: [...document.querySelectorAll(".figure__label")]
                  .filter((label) => label.scrollWidth > label.clientWidth + 1)
                  .map((label) => label.textContent),
                wall: box("#wall"),
                side: box(".side"),
              };
            }"""
        )
        assert layout["scrollWidth"] <= 390, "the page is wider than the phone"
        assert layout["scrollHeight"] > 844, "one column scrolls"
        assert layout["fontSize"] >= 12
        assert layout["questionText"] and not layout["questionClipped"]
        assert layout["labelsClipped"] == []
        # The wall, then the side below it, each the width of the page.
        assert layout["side"]["top"] >= layout["wall"]["bottom"]
        assert layout["wall"]["width"] > 300 and layout["side"]["width"] > 300


# ---- 2. a claim shows on another panel page; a hidden post leaves the screen ---------------------


def sign_in(page: Page, server: PageServer, token: str) -> None:
    page.goto(f"{server.url}/chats/qi/panel")
    page.locator("#token-input").fill(token)
    expect(page.locator("#connection")).to_be_hidden()  # nothing connects before signing in
    page.locator("#signin-submit").click()
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#connection")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")


def test_a_claim_reaches_the_other_panel_and_a_hidden_post_leaves_the_screen(
    browser: Browser, sqlite_url: str, settings: Settings
) -> None:
    prepare(sqlite_url, imported=True)
    with (
        PageServer(settings) as server,
        browser_page(browser) as screen,
        browser_page(browser, width=1440, height=900) as helen,
        browser_page(
            browser,
            width=1440,
            height=900,
            storage={"tweetchat.token.qi": server.panel_token("qi", "Bryan")},
            origin=server.url,
        ) as bryan,
    ):
        screen.goto(f"{server.url}/chats/qi/screen")
        sign_in(helen, server, server.panel_token("qi", "Helen"))
        for fmt in ("csv", "xlsx", "json", "html"):  # the panel's download buttons
            expect(helen.locator(f'#exports [data-export="{fmt}"]')).to_have_attribute(
                "href", f"/api/chats/qi/export.{fmt}"
            )
        expect(helen.locator("#report-link")).to_have_attribute("href", "/chats/qi/report")
        bryan.goto(f"{server.url}/chats/qi/panel")  # signed in by the token it keeps
        expect(bryan.locator("#who-name")).to_have_text("Bryan")
        expect(bryan.locator("#connection")).to_have_attribute("data-state", "connected")

        mine = helen.locator(f'#queue-list .post[data-id="{A3_CATH}"]')
        theirs = bryan.locator(f'#queue-list .post[data-id="{A3_CATH}"]')
        expect(theirs.locator(".claimed-by")).to_be_hidden()
        mine.locator('[data-action="claim"]').click()
        expect(mine.locator(".claimed-by")).to_have_text("Claimed by you")
        expect(theirs.locator(".claimed-by")).to_have_text("Claimed by Helen", timeout=2000)
        expect(theirs.locator('[data-action="claim"]')).to_be_disabled()
        unanswered = server.get("/api/chats/qi/unanswered?limit=500")["posts"]
        assert A3_CATH in {p["id"] for p in unanswered}

        # Hide a post that is on the wall (and in the queue) from Helen's page.
        expect(screen.locator(WALL_POST).first).to_be_visible()
        on_wall = screen.locator(WALL_POST).evaluate_all("ns => ns.map(n => n.dataset.id)")
        queued = set(
            helen.locator("#queue-list .post[data-id]").evaluate_all(
                "ns => ns.map(n => n.dataset.id)"
            )
        )
        target = next(i for i in on_wall if i in queued)
        helen.locator(f'#queue-list .post[data-id="{target}"] [data-action="hide"]').click()
        expect(screen.locator(f'#wall > .post[data-id="{target}"]')).to_have_count(0, timeout=2000)
        expect(bryan.locator(f'#queue-list .post[data-id="{target}"]')).to_contain_text(
            "hidden from screen", timeout=2000
        )
        # Hidden from the screen, still counted.
        stats = server.get("/api/chats/qi/stats?window=chat")
        expect_figures(screen, stats)
        # A screen opened now never shows it.
        with browser_page(browser) as late:
            late.goto(f"{server.url}/chats/qi/screen")
            expect(late.locator(WALL_POST).first).to_be_visible()
            expect(late.locator(f'[data-id="{target}"]')).to_have_count(0)


# ---- 3. the screen comes back after the server restarts ----------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_screen_reconnects_after_a_server_restart(
    browser: Browser, sqlite_url: str, settings: Settings
) -> None:
    prepare(sqlite_url, imported=True)
    port = free_port()
    connection_state: list[str] = []
    with browser_page(browser) as page:
        page.expose_function("noteState", lambda state: connection_state.append(state))
        page.add_init_script(
            "addEventListener('tweetchat:connection', e => window.noteState(e.detail.state))"
        )
        indicator = page.locator("#connection")
        with PageServer(settings, port=port) as first:
            page.goto(f"{first.url}/chats/qi/screen")
            expect(indicator).to_have_attribute("data-state", "connected")
            stats = first.get("/api/chats/qi/stats?window=chat")
            expect_figures(page, stats)
        expect(indicator).to_have_attribute("data-state", "reconnecting")
        expect(indicator).to_contain_text("reconnecting")
        # While away, the page keeps what it showed.
        assert figures_on(page) == {name: str(stats[name]) for name in FIGURES}
        with PageServer(settings, port=port) as second:
            expect(indicator).to_have_attribute("data-state", "connected", timeout=15_000)
            expect(indicator).to_contain_text("live")
            feed(
                second,
                [tweet("1640790000000000002", "A6: back after the restart")],
                users=[NEWCOMER],
            )
            fresh = page.locator('#wall > .post[data-id="1640790000000000002"]')
            expect(fresh).to_be_visible(timeout=WALL_WAIT_MS)
            expect_figures(page, second.get("/api/chats/qi/stats?window=chat"))
            # Connected, away (retrying while the server was down), connected again.
            assert connection_state[:3] == ["connecting", "connected", "reconnecting"]
            assert connection_state[-1] == "connected"
            assert set(connection_state[2:-1]) == {"reconnecting"}


# ---- 4. untrusted text never runs ----------------------------------------------------------------

IMG = '<img src=x onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=1</script>"
JS_URL = "javascript:window.__xss=1"
EVIL_USERS = [
    {"id": "6661", "username": IMG, "name": SCRIPT, "url": JS_URL, "profile_image_url": JS_URL},
    {"id": "6662", "username": JS_URL, "name": IMG, "url": JS_URL, "profile_image_url": JS_URL},
]
EVIL_TEXT = f"A6: {IMG} and {SCRIPT} #LeadingQI"
EVIL_IDS = ("1640796666000000001", "1640796666000000002", "1640796666000000003")


def evil_posts() -> list[dict[str, Any]]:
    first = tweet(EVIL_IDS[0], EVIL_TEXT, "6661", minute=57)
    first["public_metrics"] = {
        "retweet_count": 900,
        "reply_count": 0,
        "like_count": 900,
        "quote_count": 0,
    }
    first["entities"] = {"urls": [{"url": JS_URL, "expanded_url": JS_URL, "display_url": JS_URL}]}
    second = tweet(
        EVIL_IDS[1], f'A6: see {JS_URL} and <a href="{JS_URL}">this</a>', "6662", minute=58
    )
    second["entities"] = {"urls": [{"url": JS_URL, "expanded_url": JS_URL, "display_url": JS_URL}]}
    third = tweet(EVIL_IDS[2], f"A6: vote {SCRIPT}", "6661", minute=59)
    third["attachments"] = {"poll_ids": ["6669"]}
    return [first, second, third]


EVIL_POLL = {
    "id": "6669",
    "options": [
        {"position": 1, "label": IMG, "votes": 3},
        {"position": 2, "label": SCRIPT, "votes": 1},
    ],
    "voting_status": "closed",
}


def assert_nothing_ran(page: Page, dialogs: list[str]) -> None:
    assert page.evaluate("() => window.__xss") is None
    assert dialogs == []
    made = page.evaluate(
        """() => ({
            imgs: document.querySelectorAll("img").length,
            scripts: [...document.scripts].map(s => s.getAttribute("src")),
            handlers: [...document.querySelectorAll("*")].filter(
                n => [...n.attributes].some(a => a.name.startsWith("on"))).length,
            links: [...document.querySelectorAll("a[href]")].map(a => a.getAttribute("href")),
            postLinks: [...document.querySelectorAll(".post a[href]")].map(a => a.href),
        })"""
    )
    assert made["imgs"] == 0
    assert all(src and src.startswith("/static/") for src in made["scripts"]), made["scripts"]
    assert made["handlers"] == 0
    assert not [h for h in made["links"] if "javascript" in h.lower()], made["links"]
    assert all(h.startswith("https://x.com/") for h in made["postLinks"]), made["postLinks"]


def test_untrusted_text_shows_as_text_and_never_runs(
    browser: Browser, sqlite_url: str, settings: Settings
) -> None:
    prepare(sqlite_url, imported=True)
    with PageServer(settings) as server:
        token = server.panel_token("qi", "Helen")
        # The Content-Security-Policy would stop inline handlers anyway: bypass it, so what is
        # tested is that the pages never turn post data into markup.
        with (
            browser_page(browser, bypass_csp=True) as screen,
            browser_page(browser, width=1440, height=900, bypass_csp=True) as panel,
        ):
            dialogs: list[str] = []

            def on_dialog(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            for page in (screen, panel):
                page.on("dialog", on_dialog)
            screen.goto(f"{server.url}/chats/qi/screen")
            expect(screen.locator("#connection")).to_have_attribute("data-state", "connected")
            sign_in(panel, server, token)
            feed(server, evil_posts(), users=EVIL_USERS, polls=[EVIL_POLL])

            # The screen: the wall, the top tweets (the first is the chat's most retweeted), the poll.
            first = screen.locator(f'#wall > .post[data-id="{EVIL_IDS[0]}"]')
            expect(first).to_be_visible(timeout=WALL_WAIT_MS)
            expect(first.locator(".post__text")).to_have_text(EVIL_TEXT)
            expect(first.locator(".post__name")).to_have_text(SCRIPT)
            expect(first.locator(".post__user")).to_have_text(f"@{IMG}")
            expect(
                screen.locator(f'#top-tweets [data-id="{EVIL_IDS[0]}"] .compact__text')
            ).to_have_text(EVIL_TEXT)
            expect(screen.locator("#polls .poll__label").first).to_have_text(IMG)
            expect(screen.locator("#polls .poll__label").nth(1)).to_have_text(SCRIPT)
            expect(screen.locator(f'#wall > .post[data-id="{EVIL_IDS[2]}"]')).to_be_visible(
                timeout=WALL_WAIT_MS
            )
            assert_nothing_ran(screen, dialogs)

            # The panel's queue.
            for post_id in EVIL_IDS:
                expect(panel.locator(f'#queue-list .post[data-id="{post_id}"]')).to_be_visible()
            queued = panel.locator(f'#queue-list .post[data-id="{EVIL_IDS[1]}"]')
            expect(queued.locator(".post__name")).to_have_text(IMG)
            expect(queued.locator(".post__user")).to_have_text(f"@{JS_URL}")
            assert SCRIPT in (
                panel.locator(f'#queue-list .post[data-id="{EVIL_IDS[0]}"]').text_content() or ""
            )
            # A link to a post on X is built from its id: the bad usernames fall back to /i/web/.
            expect(queued.locator("a.post__link")).to_have_attribute(
                "href", f"https://x.com/i/web/status/{EVIL_IDS[1]}"
            )
            assert_nothing_ran(panel, dialogs)

            # The panel's search.
            panel.locator("#tab-search").click()
            panel.locator("#search-q").fill("__xss")
            panel.locator("#search-form button[type=submit]").click()
            expect(panel.locator("#search-summary")).to_have_text("3 posts")
            found = panel.locator(f'#search-list .post[data-id="{EVIL_IDS[0]}"]')
            expect(found.locator(".post__text")).to_have_text(EVIL_TEXT)
            expect(found.locator(".post__name")).to_have_text(SCRIPT)
            assert_nothing_ran(panel, dialogs)
            assert_nothing_ran(screen, dialogs)


# ---- 5. the panel without a valid credential -----------------------------------------------------


def test_the_panel_without_a_valid_credential_changes_nothing(
    browser: Browser, sqlite_url: str, settings: Settings
) -> None:
    prepare(sqlite_url, imported=True, slugs=("qi", "other"))
    with PageServer(settings) as server:
        other = server.panel_token("other", "Olga")
        helen = server.panel_token("qi", "Helen")
        before = server.get("/api/chats/qi/unanswered?limit=500")
        screen_before = server.get("/api/chats/qi/screen")
        with browser_page(
            browser,
            width=1440,
            height=900,
            storage={"tweetchat.token.qi": "not-a-token"},
            origin=server.url,
        ) as page:
            # A stored token the server does not know: back to signing in, with the server's reason.
            page.goto(f"{server.url}/chats/qi/panel")
            error = page.locator("#signin-error")
            expect(error).to_contain_text("unknown or revoked panel token")
            expect(page.locator("#workspace")).to_be_hidden()
            expect(page.locator("[data-action]:visible")).to_have_count(0)
            assert page.evaluate("() => localStorage.getItem('tweetchat.token.qi')") is None

            # Another chat's token: refused (403) with its reason.
            page.locator("#token-input").fill(other)
            page.locator("#signin-submit").click()
            expect(error).to_contain_text("another chat")
            expect(page.locator("#workspace")).to_be_hidden()
            expect(page.locator("[data-action]:visible")).to_have_count(0)

            # Signed in, then the token is revoked: an action is refused, undone, and the page
            # asks to sign in again.
            sign_in(page, server, helen)
            item = page.locator(f'#queue-list .post[data-id="{A3_CATH}"]')
            expect(item.locator('[data-action="claim"]')).to_be_enabled()
            engine = create_engine(settings.database_url)
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM panel_tokens WHERE name = 'Helen'"))
            engine.dispose()
            item.locator('[data-action="claim"]').click()
            message = page.locator("#panel-message")
            expect(message).to_contain_text("unknown or revoked panel token")
            expect(message).to_have_attribute("data-kind", "error")
            expect(page.locator("#signin")).to_be_visible()
            expect(page.locator("#workspace")).to_be_hidden()
            expect(page.locator("#connection")).to_be_hidden()
            expect(page.locator("[data-action]:visible")).to_have_count(0)
        # Nothing changed on the server.
        assert server.get("/api/chats/qi/unanswered?limit=500") == before
        assert server.get("/api/chats/qi/screen") == screen_before
        claims = server.get("/api/chats/qi/posts?limit=500")
        assert all(not p.get("claimed_by") for p in claims["posts"])


# ---- 6. the index lists the chats with their pages -----------------------------------------------


def test_the_index_lists_chats_with_links_to_their_pages(
    browser: Browser, sqlite_url: str, settings: Settings
) -> None:
    prepare(sqlite_url, imported=False)
    cli = make_cli_runner(sqlite_url)
    now = datetime.now(UTC).replace(microsecond=0)
    for slug, title, start, series in [
        ("live-one", "On now", now - timedelta(minutes=10), []),
        ("next-week", "Next week", now + timedelta(days=7), ["--series", "leadingqi-2023"]),
    ]:
        result = cli(
            "chat", "create", slug, "--title", title, "--hashtags", "#Now", "--host", "someone",
            "--start", start.isoformat(), "--end", (start + timedelta(hours=1)).isoformat(),
            *series,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    with PageServer(settings) as server, browser_page(browser, width=1280, height=800) as page:
        page.goto(f"{server.url}/")
        for group, slug in [("live", "live-one"), ("upcoming", "next-week"), ("past", "qi")]:
            card = page.locator(f'[data-group="{group}"] .chat-card[data-slug="{slug}"]')
            expect(card).to_be_visible()
            expect(card.get_by_role("link", name="Big screen")).to_have_attribute(
                "href", f"/chats/{slug}/screen"
            )
            expect(card.get_by_role("link", name="Panel")).to_have_attribute(
                "href", f"/chats/{slug}/panel"
            )
            expect(card.get_by_role("link", name="Report", exact=True)).to_have_attribute(
                "href", f"/chats/{slug}/report"
            )
        expect(page.locator('.chat-card[data-slug="qi"] .chat-card__title')).to_have_text("QI")
        # A chat of a series links to the series' report; the others have no such link.
        expect(
            page.locator('.chat-card[data-slug="next-week"]').get_by_role(
                "link", name="Series report"
            )
        ).to_have_attribute("href", "/series/leadingqi-2023/report")
        expect(
            page.locator('.chat-card[data-slug="live-one"]').get_by_role(
                "link", name="Series report"
            )
        ).to_have_count(0)
        page.locator('.chat-card[data-slug="qi"]').get_by_role(
            "link", name="Report", exact=True
        ).click()
        expect(page).to_have_url(f"{server.url}/chats/qi/report")
        expect(page.locator("#headline tbody tr").first).to_contain_text("Participants")
        page.go_back()
        page.locator('.chat-card[data-slug="qi"]').get_by_role("link", name="Big screen").click()
        expect(page).to_have_url(f"{server.url}/chats/qi/screen")
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
        page.go_back()
        page.locator('.chat-card[data-slug="qi"]').get_by_role("link", name="Panel").click()
        expect(page.locator("#signin")).to_be_visible()


# ---- screenshots for the docs (TWEETCHAT_SCREENSHOTS=1) --------------------------------------------

SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
SETTLED = """() => document.getAnimations().every(
    a => a.playState !== "running" || a.effect.getTiming().iterations === Infinity)"""


@pytest.mark.skipif(
    os.environ.get("TWEETCHAT_SCREENSHOTS") != "1",
    reason="TWEETCHAT_SCREENSHOTS=1 remakes docs/screenshots/*.png",
)
def test_screenshots(browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo chat replayed to the middle of Q4, then the pages as people see them."""
    from app.db.engine import open_database
    from app.demo import DEMO_ARCHIVE, create_demo_chat
    from app.sources.replay import Timeline

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    engine, sessions = open_database(url)
    try:
        with sessions.begin() as session:
            slug = create_demo_chat(session)
    finally:
        engine.dispose()
    cli = make_cli_runner(url)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for other, title, start in [
        ("qi-community", "Quality improvement community hour", now - timedelta(minutes=20)),
        ("leadingqi-next", "Leading QI: coaching for improvement", now + timedelta(days=12)),
    ]:
        result = cli(
            "chat", "create", other, "--title", title, "--hashtags", "#LeadingQI,#QIHour",
            "--host", "WarwickBSchool", "--start", start.isoformat(),
            "--end", (start + timedelta(hours=1)).isoformat(),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    full = load_timeline(DEMO_ARCHIVE)
    midway = datetime(2023, 3, 28, 18, 36, tzinfo=UTC)
    timeline = Timeline(
        [p for p in full.posts if p.created_at < midway], full.users, full.context, full.polls, []
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    looks: dict[str, Any] = {"locale": "en-GB", "timezone_id": "Europe/London"}
    with PageServer(Settings(database_url=url, admin_token=ADMIN)) as server:
        hub = server.hub
        assert hub is not None
        task = server.call(hub.start_replay(slug, timeline, speed=1e6, max_gap=0.002))

        async def finished() -> None:
            await task
            await (await hub.runtime(slug)).drained()

        server.call(finished())
        helen = server.panel_token(slug, "Helen")
        nicola = server.panel_token(slug, "Nicola")
        queue = server.get(f"/api/chats/{slug}/unanswered?limit=20")["posts"]
        top = server.get(f"/api/chats/{slug}/stats")["top_tweets"]
        with server.http() as http:
            for token, action, post_id in [
                (nicola, "claim", queue[0]["id"]),
                (helen, "claim", queue[2]["id"]),
                (helen, "pinned", top[0]["id"]),
            ]:
                headers = {"Authorization": f"Bearer {token}"}
                path = f"/api/chats/{slug}/posts/{post_id}/{action}"
                if action == "claim":
                    response = http.post(path, headers=headers)
                else:
                    response = http.put(path, json={"pinned": True}, headers=headers)
                assert response.status_code == 200, response.text

        shots = [
            ("screen-1080p.png", f"/chats/{slug}/screen", 1920, 1080),
            ("screen-720p-light.png", f"/chats/{slug}/screen?theme=light", 1280, 720),
        ]
        for name, path, width, height in shots:
            with browser_page(browser, width=width, height=height, **looks) as page:
                page.goto(server.url + path)
                expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
                expect(page.locator(WALL_POST).first).to_be_visible()
                expect(page.locator("#polls-box")).to_be_visible()
                page.wait_for_function(SETTLED)
                page.screenshot(path=SCREENSHOTS / name)
        with browser_page(
            browser,
            width=1440,
            height=900,
            storage={f"tweetchat.token.{slug}": helen},
            origin=server.url,
            color_scheme="light",
            **looks,
        ) as page:
            page.goto(f"{server.url}/chats/{slug}/panel")
            expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
            expect(page.locator("#queue-list .claimed-by").first).to_be_visible()
            page.wait_for_function(SETTLED)
            page.screenshot(path=SCREENSHOTS / "panel.png")
        with browser_page(browser, width=1280, height=800, color_scheme="light", **looks) as page:
            page.goto(f"{server.url}/")
            expect(page.locator(".chat-card")).to_have_count(3)
            page.wait_for_function(SETTLED)
            page.screenshot(path=SCREENSHOTS / "index.png")
