"""The built-in demo chat loads into a fresh SQLite file with the hand-made chat's figures."""

from __future__ import annotations

from pathlib import Path

from app.chats import get_chat
from app.db.engine import open_database
from app.demo import DEMO_ARCHIVE, load_demo
from app.stats import chat_stats
from tests.conftest import FIXTURES


def test_demo_archive_is_the_tested_fixture() -> None:
    # The demo ships a copy of tests/fixtures/qi-chat.jsonl inside the package; they must not drift.
    assert DEMO_ARCHIVE.read_bytes() == (FIXTURES / "qi-chat.jsonl").read_bytes()


def test_demo_loads(tmp_path: Path) -> None:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'demo.db'}")
    try:
        slug, report = load_demo(sessions)
        assert (slug, report.newly_collected, report.errors) == ("demo", 343, [])
        with sessions() as session:
            figures = chat_stats(session, get_chat(session, slug), "chat")
        # The same figures as tests/test_handmade_chat.py works out by hand for the window.
        assert (figures["participants"], figures["original_tweets"], figures["retweets"]) == (
            58,
            167,
            153,
        )
        assert [q["number"] for q in figures["questions"]] == [1, 2, 3, 4, 5, 6]
    finally:
        engine.dispose()


def test_demo_command_ends_with_the_url_to_open(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import app.cli as cli_module

    started: list[tuple[str, int, str]] = []
    monkeypatch.setattr(
        cli_module,
        "_run_server",
        lambda settings, host, port, hook=None, log_level="info": started.append(
            (host, port, log_level)
        ),
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli_module.app, ["demo", "--port", "8123"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "Open http://127.0.0.1:8123/chats/demo/screen"
    assert any(
        line.startswith("Panel:        http://127.0.0.1:8123/chats/demo/panel (token ")
        for line in lines
    )
    assert "Report:       http://127.0.0.1:8123/chats/demo/report" in lines
    assert started == [("127.0.0.1", 8123, "warning")]  # nothing printed after the URL
    assert (tmp_path / "tweetchat-demo.db").exists()
