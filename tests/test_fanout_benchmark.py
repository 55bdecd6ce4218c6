"""Smoke test of the fan-out benchmark: `benchmarks/fanout.py --quick` runs end to end (a real
server process, client processes, the naive baseline) and prints its figures as one JSON line
then a plain-text line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_ENV

ROOT = Path(__file__).resolve().parent.parent


def quick_run(*options: str, timeout: float = 120) -> tuple[dict[str, Any], str]:
    """`benchmarks/fanout.py --quick` with `options`: its figures and its line of text."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fanout.py"), "--quick", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2, result.stdout
    figures: dict[str, Any] = json.loads(lines[0])
    return figures, lines[1]


def test_quick_run_prints_the_figures_of_both_servers() -> None:
    figures, summary = quick_run()
    assert summary.startswith("fanout: ")
    assert figures["benchmark"] == "fanout"
    assert figures["machine"]["nproc"] >= 1
    runs = {run["server"]: run for run in figures["runs"]}
    assert set(runs) == {"tweetchat", "baseline"}
    posts = figures["config"]["posts"]
    assert posts > 0
    for run in runs.values():
        assert run["clients"] == 20
        assert run["delivered"]["clients_with_every_update_and_post_once"] == 20
        assert run["delivered"]["updates_share_min"] == 1.0
        assert run["post_delay_ms"]["n"] == 20 * posts
        delays = run["post_delay_ms"]
        assert 0 <= delays["p50"] <= delays["p99"] <= delays["max"]
        assert run["fanout_delay_ms"]["p99"] is not None
        assert run["server_cpu_s"] >= 0
        assert run["memory_per_connection_kib"] is not None
        assert not run["timed_out"]
    assert figures["targets"]["20"]["every_update_to_every_reader"] is True


def test_two_servers_share_the_chat_through_redis(redis_url: str) -> None:
    """`--servers 2`: one process collects, the other follows through Redis, each client sees
    every update of its own server and every post exactly once (PostgreSQL and Redis)."""
    postgres_url = os.environ.get(PG_ENV)
    if not postgres_url:
        pytest.skip(f"{PG_ENV} is not set: the two servers need PostgreSQL")
    figures, summary = quick_run(
        "--servers", "2", "--postgres-url", postgres_url, "--redis-url", redis_url, timeout=180
    )
    assert summary.startswith("fanout: tweetchat on 2 servers 20: ")
    assert figures["config"]["database"] == "postgresql, redis pub/sub"
    [run] = figures["runs"]  # no baseline: it has one process only
    assert run["servers"] == 2
    assert [s["clients"] for s in run["per_server"]] == [10, 10]
    assert [s["role"] for s in run["per_server"]] == ["collects", "follows through Redis"]
    posts = figures["config"]["posts"]
    assert run["delivered"]["clients_with_every_update_and_post_once"] == 20
    assert run["post_delay_ms"]["n"] == 20 * posts
    # The follower's updates carry when each post entered the collector.
    assert run["server_side_ms"]["n"] == 2 * posts
    assert figures["targets"]["20 on 2 servers"]["every_update_to_every_reader"] is True
