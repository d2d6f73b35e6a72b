from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pcmodel.__main__ import main
from pcmodel.workloads import seed_job


def test_demo_reproduces_the_write_up_in_virtual_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--virtual", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "pcmodel demo: 10 simulated calls of 0-2 s (seed 0) on 5 workers, queue size 100, virtual clock"
    )
    task_lines = [line for line in lines if line.startswith("[")]
    assert len(task_lines) == 10
    assert task_lines[-1] == "[10/10] task  9 -> 81 in 1.167 s (worker 1, done at 2.683 s)"
    assert "elapsed 2.683 s · sequential 10.690 s · speedup 3.98x · ideal makespan 2.683 s" in lines
    figures = json.loads(lines[-1])
    assert figures["tasks"] == figures["succeeded"] == 10
    assert figures["elapsed"] == figures["ideal_makespan"] == 2.6826728847906676
    assert figures["busy_time"] == pytest.approx(seed_job().sequential_time)
    assert figures["clock"] == "virtual"


def test_demo_options_change_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "demo",
                "--virtual",
                "--json",
                "--tasks",
                "30",
                "--workers",
                "3",
                "--seed",
                "7",
                "--queue-size",
                "2",
            ]
        )
        == 0
    )
    figures = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (figures["tasks"], figures["workers"], figures["queue_size"]) == (30, 3, 2)
    assert figures["max_queue_depth"] == 2
    assert figures["producer_wait"] > 0
    assert figures["busy_time"] == pytest.approx(seed_job(30, seed=7).sequential_time)


def test_demo_saves_the_timeline_as_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "timeline.png"
    assert main(["demo", "--virtual", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"timeline saved to {path}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--workers", "0"], "--workers must be >= 1, got 0"),
        (["demo", "--queue-size", "-3"], "--queue-size must be >= 0, got -3"),
        (["demo", "--tasks", "-1"], "--tasks must be >= 0, got -1"),
        (["demo", "--tasks", "many"], "argument --tasks: invalid int value: 'many'"),
    ],
)
def test_demo_rejects_bad_options_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == f"pcmodel demo: error: {message} (see 'pcmodel demo --help')\n"
    assert captured.out == ""


def test_python_dash_m_pcmodel_runs_the_demo() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pcmodel", "demo", "--virtual", "--tasks", "4", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(completed.stdout.splitlines()[-1])["tasks"] == 4


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
