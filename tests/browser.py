"""A real browser for the page tests: Debian's Chromium driven by Playwright's sync API.

Chromium is the system package (`/usr/bin/chromium`, installed by `make test` when missing);
Playwright never downloads a browser here. The server runs in its own thread (`HubServer`), so
the sync API in the test thread is fine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from app.config import Settings
from tests.helpers import HubServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM_ENV = "TWEETCHAT_CHROMIUM"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ADMIN = "admin-token-for-page-tests-0123"


def chromium_path() -> str | None:
    """The system Chromium: `$TWEETCHAT_CHROMIUM`, else `chromium` on the PATH."""
    return os.environ.get(CHROMIUM_ENV) or shutil.which("chromium")


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Start the system Chromium headless; close it (and Playwright's driver) on the way out."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError(
            "no Chromium: install Debian's package (apt-get install -y chromium) "
            f"or point {CHROMIUM_ENV} at one"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_page(
    browser: Browser,
    *,
    width: int = 1920,
    height: int = 1080,
    storage: dict[str, str] | None = None,
    origin: str | None = None,
    bypass_csp: bool = False,
    **options: Any,
) -> Iterator[Page]:
    """A page in a fresh context (its own storage), with `storage` put in localStorage of
    `origin` before any script of the page runs; `options` go to `browser.new_context` (locale,
    timezone_id, ...). Uncaught errors in the page fail the test when it closes."""
    context: BrowserContext = browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=1,
        bypass_csp=bypass_csp,
        **options,
    )
    errors: list[str] = []
    try:
        if storage:
            assert origin is not None
            pairs = json.dumps(storage)
            context.add_init_script(
                f"""if (location.origin === {json.dumps(origin)}) {{
                      for (const [k, v] of Object.entries({pairs})) localStorage.setItem(k, v);
                    }}"""
            )
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


class PageServer(HubServer):
    """The live server of the page tests: `HubServer`, optionally on a given port (bound with
    SO_REUSEADDR, so a restarted server takes the port of the one it replaces)."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        super().__init__(settings)
        if port:
            self._sock.close()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            self._sock = sock
            self.port = port
            self.url = f"http://127.0.0.1:{port}"
            self._thread = threading.Thread(
                target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
            )

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def panel_token(self, slug: str, name: str) -> str:
        """A new panel token for `name`, made with the admin token as the panel would."""
        with self.http() as http:
            response = http.post(
                f"/api/chats/{slug}/panel-tokens",
                json={"name": name},
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def get(self, path: str) -> Any:
        with self.http() as http:
            response = http.get(path)
        assert response.status_code == 200, response.text
        return response.json()
