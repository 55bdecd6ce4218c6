"""A cross-post on the big screen and the panel, in Debian's Chromium (issue 7, step 5): once Helen's
accounts are linked (through the admin API, with the screen open), her post on X shows once, with
"also on Mastodon, Bluesky" linking to the copies, and the copies leave the wall."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from app.config import Settings
from tests.browser import ADMIN, PageServer, browser_page, launch_chromium
from tests.helpers import make_cli_runner
from tests.test_people import (
    LINK,
    SKEET,
    SKEET_PAGE,
    TOOT,
    TOOT_PAGE,
    X_POST,
    create_chat,
    store,
)

WALL_POST = "#wall > .post[data-id]"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as chromium:
        yield chromium


def test_a_cross_post_shows_once_with_links_to_its_other_networks(
    browser: Browser, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    create_chat(make_cli_runner(sqlite_url))
    store(sqlite_url)
    settings = Settings(database_url=sqlite_url, admin_token=ADMIN)
    # Tall enough for the six posts on the wall.
    with PageServer(settings) as server, browser_page(browser, height=2600) as screen:
        screen.goto(f"{server.url}/chats/qi/screen")
        expect(screen.locator("#connection")).to_have_attribute("data-state", "connected")
        # Not linked yet: three posts on three networks.
        for post_id in (X_POST, TOOT, SKEET):
            expect(screen.locator(f'{WALL_POST}[data-id="{post_id}"]')).to_have_count(1)
        expect(screen.locator(".post__also")).to_have_count(0)
        expect(screen.locator('[data-figure="participants"]')).to_have_text("5")

        with server.http() as http:
            linked = http.post(
                "/api/people/links",
                json={"accounts": LINK},
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
        assert linked.status_code == 200, linked.text

        # Linked: the copies leave the wall, the X post lists them, the figures count once.
        expect(screen.locator(f'{WALL_POST}[data-id="{TOOT}"]')).to_have_count(0)
        expect(screen.locator(f'{WALL_POST}[data-id="{SKEET}"]')).to_have_count(0)
        also = screen.locator(f'{WALL_POST}[data-id="{X_POST}"] .post__also')
        expect(also).to_have_text("also on Mastodon, Bluesky")
        for network, href in (("mastodon", TOOT_PAGE), ("bluesky", SKEET_PAGE)):
            link = also.locator(f'a.post__also-link[data-network="{network}"]')
            expect(link).to_have_attribute("href", href)
            expect(link).to_have_attribute("rel", "noopener noreferrer")
        expect(screen.locator('[data-figure="participants"]')).to_have_text("3")
        expect(screen.locator('[data-figure="original_tweets"]')).to_have_text("4")
        screen.screenshot(path="/tmp/tweetchat-screen-cross-post.png")

        # A page opened now gets the same from its snapshot.
        screen.reload()
        expect(screen.locator("#connection")).to_have_attribute("data-state", "connected")
        expect(screen.locator(f'{WALL_POST}[data-id="{X_POST}"] .post__also')).to_have_text(
            "also on Mastodon, Bluesky"
        )
        expect(screen.locator(f'{WALL_POST}[data-id="{SKEET}"]')).to_have_count(0)
