"""`pcmodel ledger PATH`: a short report of a ledger; a file that is no ledger is one line, exit 2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pcmodel import Retry, run_job
from pcmodel.__main__ import main


async def price(car: int) -> int:
    await asyncio.sleep(car / 10)
    if car % 4 == 1:
        raise ConnectionError(f"car {car}:\nthe API went away")
    if car == 6:
        raise TimeoutError("too slow")
    return car


def test_the_report_gives_counts_commonest_errors_and_slowest_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "prices.sqlite"
    run_job(
        price, range(10), clock="virtual", ledger=path, retries=Retry(1, on=(ConnectionError,), backoff=0)
    )
    capsys.readouterr()
    assert main(["ledger", str(path), "--slowest", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}: the ledger of tests.test_cli_ledger:price, 1 run",
        "10 items: 6 ok, 4 failed (3 dead letters, failed after every retry)",  # not retried: not dead
        "commonest errors:",
        "  3  ConnectionError  e.g. car 9: the API went away",
        "  1  TimeoutError  e.g. too slow",
        "slowest items:",
        "  1.800 s  9  (failed: ConnectionError, 2 attempts, run 1)",
        "  1.000 s  5  (failed: ConnectionError, 2 attempts, run 1)",
    ]


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


def test_a_missing_file_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(["ledger", str(tmp_path / "nope.sqlite")], capsys)
    assert err.startswith("pcmodel ledger: there is no ledger at")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00garbage" * 500, "it is not an SQLite file, or it is damaged"),
        (b"", "is an empty SQLite file, not a ledger"),
    ],
)
def test_a_file_that_is_no_ledger_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    path = tmp_path / "bad.sqlite"
    path.write_bytes(content)
    assert message in _refused(["ledger", str(path)], capsys)


def test_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "is a folder" in _refused(["ledger", str(tmp_path)], capsys)


def test_bad_counts_are_refused_like_every_other_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ledger", "x.sqlite", "--errors", "-1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "pcmodel ledger: error: --errors must be >= 0, got -1 (see 'pcmodel ledger --help')\n"
    )
