"""The Redis comparison (`python -m benchmarks --only peers`) runs end to end at tiny sizes.

One quick run (a redis-server of its own, worker processes of every system installed here)
into a folder that already holds a full run's results.json, as `--only` is used after a full
run: the test checks that every row was measured for pcmodel and for each peer that is
installed (a peer that is not is skipped, with the reason), that every item's value came back
in every throughput run, that pcmodel lost and repeated nothing when a worker was killed,
and that the other comparisons' results were kept. No timing is asserted: the numbers of a
tiny run on a shared machine mean nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERS = {"arq": ["arq"], "saq": ["saq"], "taskiq": ["taskiq", "taskiq_redis"]}
QUICK_LATENCY_SAMPLES = 4
"""`bench_peers.QUICK["latency_samples"]`."""

pytestmark = [
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="redis-server is not installed: run .ci/redis-setup.sh (apt-get install -y redis-server)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("redis") is None,
        reason="the redis extra is not installed (pip install -e '.[redis]')",
    ),
]


def _missing(system: str) -> list[str]:
    wanted = os.environ.get("BENCH_PEERS_SYSTEMS")
    if wanted and system not in wanted.split(","):
        return ["left out by BENCH_PEERS_SYSTEMS"]
    return [module for module in PEERS[system] if importlib.util.find_spec(module) is None]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-peers")
    previous = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    previous["results"].pop("peers", None)
    previous["environment"].pop("reruns", None)
    (out / "results.json").write_text(json.dumps(previous))
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "peers", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads((out / "results.json").read_text())
    assert "skipped" not in data["results"]["peers"], data["results"]["peers"]
    return out, previous, data


def _blocks(data: dict[str, Any]) -> list[dict[str, Any]]:
    peers = data["results"]["peers"]
    return [*peers["noop"], peers["sleep"]]


def test_every_throughput_run_handed_back_every_value(
    quick_run: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, _, data = quick_run
    peers = data["results"]["peers"]
    assert [block["processes"] for block in peers["noop"]] == [1, 2, 4]
    assert peers["sleep"]["processes"] == 4
    for block in _blocks(data):
        assert block["failures"] == []
        for row in block["rows"]:
            assert row["items"] >= 20
            assert len(row["rates"]) == peers["sizes"]["rounds"]
            assert all(rate > 0 for rate in row["rates"])


def test_pcmodel_has_every_row_and_survives_a_kill(
    quick_run: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, _, data = quick_run
    peers = data["results"]["peers"]
    for block in _blocks(data):
        assert {"pcmodel", "pcmodel tuned"} <= {row["name"] for row in block["rows"]}
    latency = {row["name"]: row for row in peers["latency"]}
    for name in ("pcmodel", "pcmodel tuned"):
        assert len(latency[name]["samples_ms"]) == QUICK_LATENCY_SAMPLES
        assert 0 < latency[name]["p50_ms"] <= latency[name]["p99_ms"]
    crash = next(row for row in peers["crash"] if row["system"] == "pcmodel")
    assert crash["killed"] is True
    assert (crash["lost"], crash["delivered_twice"], crash["never_ran"]) == (0, 0, 0)


@pytest.mark.parametrize("system", sorted(PEERS))
def test_each_installed_peer_has_every_row(
    quick_run: tuple[Path, dict[str, Any], dict[str, Any]], system: str
) -> None:
    missing = _missing(system)
    if missing:
        how = (
            "pip install click && pip install --no-deps arq"
            if system == "arq"
            else "pip install -e '.[bench]'"
        )
        pytest.skip(f"{system} is not measured here ({', '.join(missing)}); to add it: {how}")
    _, _, data = quick_run
    peers = data["results"]["peers"]
    for block in _blocks(data):
        assert len([row for row in block["rows"] if row["system"] == system]) == 2  # defaults and tuned
    latency = [row for row in peers["latency"] if row["system"] == system]
    assert len(latency) == 2
    assert all(len(row["samples_ms"]) == QUICK_LATENCY_SAMPLES for row in latency)
    crash = [row for row in peers["crash"] if row["system"] == system]
    assert len(crash) == 1
    assert crash[0]["killed"] is True
    # Whatever a peer lost or repeated is reported, not judged; the counts must agree: an item
    # that never ran has no value, so it is among those not done.
    assert 0 <= crash[0]["never_ran"] <= crash[0]["lost"] <= crash[0]["items"]


def test_the_section_has_every_table_and_the_other_results_are_kept(
    quick_run: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    out, previous, data = quick_run
    assert list(data["results"]) == [*previous["results"], "peers"]
    for name in previous["results"]:
        assert data["results"][name] == previous["results"][name]
    assert data["environment"]["date"] == previous["environment"]["date"]
    assert set(data["environment"]["reruns"]) == {"peers"}
    markdown = (out / "RESULTS.md").read_text()
    assert "## 10. Scaling out: the Redis path against arq, SAQ and taskiq" in markdown
    assert "## 1. Throughput" in markdown
    assert "Re-run alone later (`--only peers`)" in markdown
    assert "-core machine, everything local" in markdown
    for header in (
        "| system | no-op, 1 proc (items/s)",
        "| configuration | slots/process | 1 proc items/s",
        "| configuration | items | items/s | of ideal",
        "| configuration | items | p50 (ms) | p99 (ms)",
        "| system (safe settings) | items | worker killed",
    ):
        assert header in markdown
    assert "Redis, no-op, 1 worker process: pcmodel >= 10,000 items/s" in markdown
