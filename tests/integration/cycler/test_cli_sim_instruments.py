"""``voltloop sim serve`` in a subprocess (Ctrl-C stops it cleanly) and
``voltloop instruments check`` against it, over TCP and pty."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voltloop.orchestrator.cli import main

pytestmark = pytest.mark.integration

VOLTLOOP = [sys.executable, "-c", "from voltloop.orchestrator.cli import main; main()"]
#: The same, with Ctrl-C answered even when the test run itself ignores SIGINT (a suite
#: started in the background by a non-interactive shell passes SIG_IGN on to every child).
VOLTLOOP_CTRL_C = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from voltloop.orchestrator.cli import main; main()",
]


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture(params=["--tcp", "--pty"])
def served(request: pytest.FixtureRequest):
    proc = subprocess.Popen(
        [*VOLTLOOP_CTRL_C, "sim", "serve", "--channels", "3", "--speed", "600", "--json",
         request.param, "--seed", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        yield proc, json.loads(line)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_sim_serve_then_instruments_check(served, capsys, tmp_path) -> None:
    proc, info = served
    assert info["channels"] == 3 and len(info["cells"]) == 3
    url = info["cycler"]
    assert url.startswith("socket://127.0.0.1:") if info["link"] == "tcp" else Path(url).exists()
    code, out, _ = _run_cli(["instruments", "check", url, "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["kind"] == "cycler" and report["identity"]["model"] == "VLC-3"
    assert report["self_test"]["passed"] is True
    assert report["limits"]["channels"] == 3 and report["limits"]["max_current_A"] > 0
    assert report["channel_states"] == ["idle"] * 3
    log = tmp_path / "transcript.log"
    code, _, err = _run_cli(["instruments", "check", url, "--transcript", str(log)], capsys)
    assert code == 0 and "VOLTLOOP" in err and "max_temperature_C" in err
    assert "> b'*IDN?\\n'" in log.read_text()
    # the potentiostat is found by auto-detection (the cycler's *IDN? fails first)
    code, out, _ = _run_cli(["instruments", "check", info["potentiostat"], "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["kind"] == "potentiostat" and report["identity"]["maker"] == "PalmSens"
    assert report["limits"]["max_frequency_Hz"] > 1e4
    # Ctrl-C stops the servers and the clock cleanly
    proc.send_signal(signal.SIGINT)
    try:  # each server and the clock join within a bound; a starved machine adds up
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        stderr = proc.communicate()[1][-2000:]
        raise AssertionError(f"sim serve ignored Ctrl-C for 30 s: {stderr}") from None
    assert code == 0
    assert "stopped" in proc.stderr.read()
    if info["link"] == "pty":
        assert not os.path.lexists(url) and not os.path.lexists(info["potentiostat"])


def test_instruments_check_unreachable_url_fails_fast(tmp_path, capsys) -> None:
    for url in ("socket://127.0.0.1:1", str(tmp_path / "ttyNONE")):
        began = time.monotonic()
        code, out, err = _run_cli(["instruments", "check", url, "--timeout", "0.5"], capsys)
        assert code == 1 and out == ""
        assert "error" in err and url in err and "Traceback" not in err
        assert time.monotonic() - began < 5


def test_sim_serve_rejects_a_bad_speed(capsys) -> None:
    code, _, err = _run_cli(["sim", "serve", "--speed", "fast", "--duration", "0"], capsys)
    assert code == 2 and "speed" in err
