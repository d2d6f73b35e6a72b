"""`pcmodel` as a hostile user types it: every error is one line and exit code 2, before any job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcmodel.__main__ import main


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `pcmodel argv`, check it exits 2 with one line on stderr and nothing run; return the line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no job started: its first line was never printed
    assert captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--tasks", "nan"], "pcmodel demo: error: argument --tasks: invalid int value: 'nan'"),
        (["demo", "--tasks", "inf"], "argument --tasks: invalid int value: 'inf'"),
        (["demo", "--tasks", "1e3"], "argument --tasks: invalid int value: '1e3'"),
        (["demo", "--tasks", ""], "argument --tasks: invalid int value: ''"),
        (["demo", "--tasks", "9" * 5000], "argument --tasks: invalid int value"),
        (["demo", "--tasks", "-1"], "pcmodel demo: error: --tasks must be >= 0, got -1"),
        (["demo", "--tasks", str(10**20)], f"--tasks must be <= 1000000, got {10**20}"),
        (["demo", "--tasks"], "argument --tasks: expected one argument"),
        (["demo", "--workers", "0"], "pcmodel demo: error: --workers must be >= 1, got 0"),
        (["demo", "--workers", "100000000"], "--workers must be <= 10000, got 100000000"),
        (["demo", "--workers", "two"], "argument --workers: invalid int value: 'two'"),
        (["demo", "--queue-size", "-3"], "--queue-size must be >= 0, got -3"),
        (["demo", "--queue-size", "1.5"], "argument --queue-size: invalid int value: '1.5'"),
        (["demo", "--seed", "nan"], "argument --seed: invalid int value: 'nan'"),
        (["demo", "--plot"], "argument --plot: expected one argument"),
        (["demo", "--virtual=yes"], "argument --virtual: ignored explicit argument 'yes'"),
        (["demo", "--bogus"], "pcmodel: error: unrecognized arguments: --bogus"),
        (["demo", "extra"], "unrecognized arguments: extra"),
        (["bogus"], "pcmodel: error: argument COMMAND: invalid choice: 'bogus'"),
        (["--bogus"], "pcmodel: error: unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(argv, capsys)
    assert message in line
    assert line.rstrip().endswith("--help')")


# -- --plot is checked before the job runs ---------------------------------------------------


def test_plot_into_a_missing_folder_is_refused_before_the_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing" / "dir" / "x.png"
    line = refused(["demo", "--plot", str(path)], capsys)  # real clock: would take seconds
    assert f"--plot's folder '{path.parent}' does not exist, got '{path}'" in line
    assert not path.parent.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("timeline.xyz", "--plot cannot write '.xyz' images"),
        ("timeline.PNGX", "--plot cannot write '.PNGX' images"),
        ("a-file/x.png", "is not a folder"),
        ("a-folder", "--plot must name a file, got the folder"),
        ("x" * 300 + ".png", "File name too long"),
    ],
)
def test_plot_paths_matplotlib_cannot_write_are_refused(
    name: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    line = refused(["demo", "--virtual", "--plot", str(tmp_path / name)], capsys)
    assert message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder"]  # nothing written


def test_an_empty_plot_path_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--plot needs a file name, got ''" in refused(["demo", "--virtual", "--plot", ""], capsys)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root may write anywhere")
def test_plot_into_a_read_only_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        line = refused(["demo", "--virtual", "--plot", str(folder / "x.png")], capsys)
    finally:
        folder.chmod(0o700)
    assert "is not writable" in line


@pytest.mark.parametrize(("name", "magic"), [("timeline", b"\x89PNG"), ("timeline.svg", b"<?xml")])
def test_plot_writes_exactly_the_path_given_in_the_format_its_suffix_names(
    name: str, magic: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    assert main(["demo", "--virtual", "--tasks", "3", "--plot", str(path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no ".png" added to a bare name
    assert path.read_bytes().startswith(magic)
    assert f"timeline saved to {path}" in capsys.readouterr().out


def test_a_terminal_that_cannot_show_a_character_gets_a_stand_in_not_a_traceback() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pcmodel", "demo", "--virtual", "--tasks", "2"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert (completed.returncode, completed.stderr) == (0, "")
    assert "elapsed 1.689 s ? sequential 3.205 s ? speedup 1.90x" in completed.stdout
