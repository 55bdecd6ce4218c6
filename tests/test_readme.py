"""The README's two commands, the CLI it documents, CI and the Dockerfile stay true to the code."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from app.cli import app as cli_app

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash)?\n(.*?)```", text, flags=re.DOTALL)


def test_readme_gives_the_run_and_test_commands() -> None:
    blocks = [block.strip() for block in code_blocks(README)]
    assert "make demo" in blocks
    assert "make test" in blocks
    makefile = (ROOT / "Makefile").read_text()
    demo_recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "tweetchat demo" in demo_recipe
    assert re.search(r"^test: lint$", makefile, flags=re.MULTILINE)
    test_recipe = makefile.split("\ntest: lint", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in test_recipe
    # The browser tests' Chromium is Debian's package, installed before pytest when missing.
    install = test_recipe.find("apt-get install -y -qq chromium")
    assert "command -v chromium" in test_recipe and 0 <= install < test_recipe.find("pytest")
    assert "playwright install" not in makefile
    lint_recipe = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    for tool in ("ruff check", "ruff format --check", "mypy"):
        assert tool in lint_recipe
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().endswith("make test")


GROUPS = ("chat", "series")  # commands with subcommands


def test_every_documented_command_exists() -> None:
    commands = set()
    for block in code_blocks(README):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("tweetchat "):
                words = shlex.split(line, comments=True)[1:]
                sub = [w for w in words[:2] if not w.startswith("-")]
                commands.add(tuple(sub[:2]) if sub[0] in GROUPS else (sub[0],))
    assert {
        ("chat", "create"),
        ("import",),
        ("stats",),
        ("export",),
        ("serve",),
        ("demo",),
        ("series", "report"),
    } <= commands
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(cli_app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
    # Every option the README uses is one the command accepts.
    for block in code_blocks(README):
        for line in block.replace("\\\n", " ").splitlines():
            if not line.strip().startswith("tweetchat "):
                continue
            words = shlex.split(line, comments=True)[1:]
            chosen = words[:2] if words[0] in GROUPS else words[:1]
            help_text = runner.invoke(cli_app, [*chosen, "--help"], env={"COLUMNS": "200"}).output
            for option in (w for w in words if w.startswith("--")):
                assert option in help_text, (line, option)


def test_cli_help_lists_the_product_commands() -> None:
    result = CliRunner().invoke(cli_app, ["--help"], env={"COLUMNS": "200"})
    for name in ("chat", "import", "stats", "export", "serve", "demo"):
        assert re.search(rf"│ {name}\s", result.output), name


def test_dockerfile_installs_and_serves_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, flags=re.MULTILINE)
    for path in ("pyproject.toml", "app", "migrations", "frontend"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", dockerfile, flags=re.MULTILINE), path
    assert "pip install ." in dockerfile
    user = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    assert "EXPOSE 8000" in dockerfile
    assert '"tweetchat", "serve", "--host", "0.0.0.0", "--port", "8000"' in dockerfile


def test_version_option() -> None:
    from app import __version__

    result = CliRunner().invoke(cli_app, ["--version"])
    assert (result.exit_code, result.output.strip()) == (0, f"tweetchat {__version__}")
