"""The benchmark scripts run (`--quick`, SQLite only) and print their figures as promised: one
JSON object on a line, then one line of plain text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    figures = json.loads(lines[0])
    assert isinstance(figures, dict)
    return figures, lines[1]


@pytest.mark.parametrize("backends", ["sqlite"])
def test_ingest_benchmark_prints_its_figures(tmp_path: Path, backends: str) -> None:
    figures, summary = run_benchmark(
        "ingest.py", "--posts", "600", "--backends", backends, "--workdir", str(tmp_path),
        tmp_path=tmp_path,
    )  # fmt: skip
    assert figures["benchmark"] == "ingest"
    assert figures["posts"] == 600
    assert set(figures["archive"]["shares"]) == {"original", "retweet", "reply", "quote"}
    sqlite = figures["results"]["sqlite"]
    assert sqlite["runtime"]["collected"] == 600
    # Every post stored and counted, one process or with a storage process, with the figures
    # the database gives.
    for measure in ("runtime", "storage_process"):
        assert sqlite[measure]["collected"] == 600
        assert sqlite[measure]["figures_match_store"] is True
    for measure in ("runtime", "storage_process", "executemany", "import"):
        assert sqlite[measure]["posts_per_s"] > 0
    assert sqlite["ratio"] > 0 and sqlite["storage_ratio"] > 0
    assert {"sqlite_posts_per_s_min", "ratio_min", "sqlite_rate_met"} <= set(figures["targets"])
    assert {"nproc", "cpu", "python"} <= set(figures["machine"])
    assert summary.startswith("ingest of 600 posts: sqlite:")
    assert not list(tmp_path.glob("tweetchat-bench-*")), "the work folder is left behind"


def test_update_cost_benchmark_prints_its_figures(tmp_path: Path) -> None:
    figures, summary = run_benchmark(
        "update_cost.py", "--sizes", "300,1500", "--workdir", str(tmp_path), tmp_path=tmp_path
    )
    assert figures["benchmark"] == "update_cost"
    sizes = figures["results"]["sqlite"]["sizes"]
    assert [s["posts"] for s in sizes] == [300, 1500]
    for size in sizes:
        assert size["chat_posts_rows"] == size["posts"]
        assert size["runtime_start_seconds"] >= 0
        assert size["add_seconds_median"] > 0
        assert len(size["adds"]) == figures["warmup"] + figures["repeats"]
    assert figures["results"]["sqlite"]["ratio_largest_to_smallest"] > 0
    assert "sqlite_ratio_met" in figures["targets"]
    assert summary.startswith("adding 200 posts")
