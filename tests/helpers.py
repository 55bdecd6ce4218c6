"""Helpers shared by the tests: running the CLI in-process against a given database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from typer.testing import CliRunner

from app.cli import app as cli_app


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    output: str  # stdout and stderr together


CliRunnerFn = Callable[..., CliResult]


def make_cli_runner(database_url: str) -> CliRunnerFn:
    def run(*args: str) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(
            cli_app,
            list(args),
            env={"TWEETCHAT_DATABASE_URL": database_url, "COLUMNS": "200", "NO_COLOR": "1"},
            catch_exceptions=False,
        )
        return CliResult(result.exit_code, result.output)

    return run
