"""The benchmark command runs end to end at tiny sizes and writes well-formed results.

Only the shape of the output is checked: the numbers of a tiny run on a shared machine mean
nothing, and no test here asserts a timing. The Redis comparison (`peers`), which starts
worker processes and a redis-server, has its own test: `test_bench_peers_smoke.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = {
    "throughput",
    "makespan",
    "memory",
    "virtual_clock",
    "growth",
    "latency",
    "hotpath",
    "ledger",
    "adaptive",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            ",".join(sorted(MEASUREMENTS)),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return out, json.loads((out / "results.json").read_text())


def test_the_quick_run_measures_everything(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _, data = quick_run
    assert set(data["results"]) == MEASUREMENTS
    environment = data["environment"]
    assert environment["quick"] is True
    assert environment["versions"]["pcmodel"]
    assert environment["python"]
    assert environment["machine"]


def test_throughput_rows_are_complete_and_relative_to_the_bare_pipeline(
    quick_run: tuple[Path, dict[str, Any]],
) -> None:
    _, data = quick_run
    functions = data["results"]["throughput"]["functions"]
    assert set(functions) == {"no-op", "one await"}
    for rows in functions.values():
        by_name = {row["name"]: row for row in rows}
        assert {"bare asyncio pipeline", "pcmodel trace=False", "pcmodel trace=True"} <= set(by_name)
        assert by_name["bare asyncio pipeline"]["ratio"] == pytest.approx(1.0)
        for row in rows:
            assert row["tasks_per_s"] > 0
            assert row["ratio"] > 0
            low, high = row["spread"]
            assert low <= 1.0 <= high


def test_the_simulated_makespan_is_the_ideal_one(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _, data = quick_run
    for row in data["results"]["virtual_clock"]["rows"]:
        assert row["makespan_error"] < 1e-9, row


def test_memory_and_latency_rows_are_well_formed(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _, data = quick_run
    memory = data["results"]["memory"]
    assert {row["name"] for row in memory["rows"]} >= {"pcmodel trace=False", "pcmodel trace=True"}
    assert all(row["peak"] > 0 for row in memory["rows"])
    for block in data["results"]["latency"]["by_load"]:
        for row in block["rows"]:
            assert 0 < row["p50_ms"] <= row["p99_ms"]


def test_results_markdown_has_every_section_and_the_targets(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, data = quick_run
    markdown = (out / "RESULTS.md").read_text()
    assert "| target | measured | verdict |" in markdown
    for title in (
        "1. Throughput",
        "3. Memory",
        "4. Virtual clock",
        "5. Growth",
        "6. Latency",
        "7. Hot path",
        "8. The outcome ledger",
        "9. Adaptive concurrency",
    ):
        assert f"## {title}" in markdown
    assert "- Python: " in markdown
    hotpath = data["results"]["hotpath"]
    assert "now: pcmodel trace=True" in markdown
    for name in hotpath["versions"]:
        assert f"{name}: pcmodel trace=True" in markdown
    for name in hotpath["missing"]:
        assert f"*{name}*: not measured" in markdown


def test_adaptive_rows_compare_every_pool_on_both_apis(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _, data = quick_run
    adaptive = data["results"]["adaptive"]
    capacity = adaptive["capacity"]
    for rows, k in ((adaptive["virtual"], capacity), (adaptive["real"], adaptive["real_capacity"])):
        by_name = {row["name"]: row for row in rows}
        assert set(by_name) == {
            f"fixed pool of {k // 4} (K/4)",
            f"fixed pool of {k} (K)",
            f"fixed pool of {4 * k} (4K)",
            "Adaptive(max=200)",
        }
        assert by_name[f"fixed pool of {k} (K)"]["ratio"] == pytest.approx(1.0)
        for row in rows:
            # Every item is retried until it succeeds: nothing is lost, whatever the pool.
            assert row["succeeded"] == adaptive["items" if rows is adaptive["virtual"] else "real_items"]
            assert row["failed"] == 0
            assert row["requests"] >= row["succeeded"]
        # A pool no larger than K never meets a 429; only the adaptive pool has a limit to report.
        assert by_name[f"fixed pool of {k // 4} (K/4)"]["per_1000"] == 0
        assert by_name[f"fixed pool of {k} (K)"]["per_1000"] == 0
        assert by_name[f"fixed pool of {4 * k} (4K)"]["per_1000"] > 0
        assert by_name["Adaptive(max=200)"]["mean_limit"] is not None
        assert by_name[f"fixed pool of {k} (K)"]["mean_limit"] is None
    scaling = adaptive["scaling"]
    assert [row["capacity"] for row in scaling] == [1, 4]
    for row in scaling:
        assert row["ratio"] > 0
        assert row["per_1000"] >= 0
        assert row["mean_limit"] >= 1


def test_the_plots_are_png_files(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = quick_run
    for name in ("bench-throughput.png", "bench-growth.png"):
        assert (out / name).read_bytes().startswith(PNG_SIGNATURE)


def test_render_rewrites_the_results_from_the_saved_data(
    quick_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = quick_run
    (tmp_path / "results.json").write_text((out / "results.json").read_text())
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--render", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "## 1. Throughput" in (tmp_path / "RESULTS.md").read_text()
    assert (tmp_path / "bench-throughput.png").read_bytes().startswith(PNG_SIGNATURE)
