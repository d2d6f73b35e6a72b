"""`pcmodel serve-api` as a hostile user runs it: bad options, idle sockets, garbage, Ctrl-C.

Subprocesses are read by a thread and waited for with timeouts, so a server that hangs fails
the test instead of hanging it.
"""

from __future__ import annotations

import signal
import socket
import sys

import pytest

from pcmodel.__main__ import main
from pcmodel.carapi import serve_main
from tests._command import BOUND, Command


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--latency", "inf", "inf"],
            "argument --latency: expected a finite number of seconds >= 0, got 'inf'",
        ),
        (
            ["--latency", "0", "nan"],
            "argument --latency: expected a finite number of seconds >= 0, got 'nan'",
        ),
        (["--latency", "-1", "1"], "argument --latency: expected a finite number of seconds >= 0, got '-1'"),
        (["--latency", "0", "1e999"], "argument --latency: expected a finite number of seconds >= 0"),
        (["--latency", "0.5", "0.1"], "--latency LOW must be <= HIGH, got 0.5 0.1"),
        (["--latency", "1"], "argument --latency: expected 2 arguments"),
        (["--latency", "fast", "1"], "expected a finite number of seconds >= 0, got 'fast'"),
        (["--error-rate", "nan"], "argument --error-rate: expected a finite number, got 'nan'"),
        (["--error-rate", "2"], "--error-rate must be between 0 and 1, got 2.0"),
        (["--rate-limit", "inf"], "argument --rate-limit: expected a finite number, got 'inf'"),
        (["--rate-limit", "0"], "--rate-limit must be > 0 requests per second, got 0.0"),
        (["--rate-limit", "1e-320"], "--rate-limit must be >= 1/86400 requests per second"),
        (["--burst", "3"], "--burst needs a --rate-limit"),
        (["--rate-limit", "5", "--burst", "0"], "--burst must be >= 1, got 0"),
        (["--rate-limit", "5", "--burst", "1" + "0" * 30], "--burst must be <= 1000000000"),
        (["--idle-timeout", "0"], "--idle-timeout must be a finite number of seconds > 0, got 0.0"),
        (["--idle-timeout", "inf"], "argument --idle-timeout: expected a finite number of seconds >= 0"),
        (["--idle-timeout"], "argument --idle-timeout: expected one argument"),
        (["--port", "70000"], "--port must be <= 65535, got 70000"),
        (["--port", "-1"], "--port must be >= 0, got -1"),
        (["--port", "http"], "argument --port: invalid int value: 'http'"),
        (["--host", "0.0.0.0"], "--host must be 'localhost' or a loopback address"),
        (["--host", ""], "--host must be 'localhost' or a loopback address"),
        (["--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["extra"], "unrecognized arguments: extra"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for run in (serve_main, lambda args: main(["serve-api", *args])):
        with pytest.raises(SystemExit) as exit_info:
            run(argv)
        assert exit_info.value.code == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1, captured.err
        assert captured.err.startswith("pcmodel serve-api: error: ")
        assert message in captured.err
        assert captured.err.endswith("(see 'pcmodel serve-api --help')\n")


def test_help_still_describes_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--idle-timeout T" in out
    assert "localhost" in out


def exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes on a new connection; return all the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
        return answer


def test_serve_api_on_localhost_closes_idle_sockets_logs_garbage_in_one_line_and_stops_on_ctrl_c() -> None:
    served = Command("serve-api", "--host", "localhost", "--idle-timeout", "0.2", "--latency", "0", "0")
    try:
        first = served.line()
        assert first.startswith("car-price API on http://127.0.0.1:")
        port = int(first.rsplit(":", 1)[1])
        assert "Ctrl-C to stop" in served.line()
        with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as idle:
            assert idle.recv(1024) == b""  # closed by the server, not by the timeout
        answer = exchange(port, b"\x00\x01 not http at all\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n")
        assert b"\r\nServer: pcmodel-carapi\r\n" in answer
    finally:
        code, err = served.finish(signal.SIGINT)
    assert served.line().startswith("stopped: 0 requests")
    lines = err.splitlines()
    assert code == 130, err
    assert len(lines) == 2, err
    assert lines[0].startswith("pcmodel serve-api: malformed request from 127.0.0.1: 400 ")
    assert lines[1] == "pcmodel serve-api: interrupted"


@pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")
def test_ctrl_c_twice_while_requests_are_in_flight_is_one_line_and_130() -> None:
    served = Command("serve-api", "--latency", "30", "30")
    clients: list[socket.socket] = []
    try:
        port = int(served.line().rsplit(":", 1)[1])
        served.line()
        for car in range(3):
            client = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
            client.sendall(b"GET /cars/%d/price HTTP/1.1\r\nHost: x\r\n\r\n" % car)
            clients.append(client)
        # /stats answers at once; its in_flight says the three calls are being served.
        for _ in range(1000):
            stats = exchange(port, b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if b'"in_flight": 3' in stats:
                break
        assert b'"in_flight": 3' in stats
    finally:
        # The second Ctrl-C lands while the server stops: it used to break aiohttp's shutdown
        # and print a traceback per connection.
        code, err = served.finish(signal.SIGINT, times=2)
        for client in clients:
            client.close()
    assert (code, err) == (130, "pcmodel serve-api: interrupted\n")
    assert served.line().startswith("stopped: 3 requests")
