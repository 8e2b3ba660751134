"""The dry run's early Prefect server: starts before Prefect is imported, serves the
flows run inside ``serving()``, stops with its owner, even one killed by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from voltloop.orchestrator.prefect_server import (
    PrefectServerError,
    TemporaryServer,
    start_temporary_server,
)


def _gone(pid: int, within_s: float) -> bool:
    """The process ended (a zombie not yet reaped by its new parent counts as ended)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_flows_inside_serving_use_the_early_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = start_temporary_server()
    assert server is not None
    try:
        from prefect import flow
        from prefect.settings import get_current_settings

        @flow
        def which_api() -> str | None:
            return get_current_settings().api.url

        with server.serving() as used:
            assert used
            assert which_api() == server.api_url
        assert get_current_settings().api.url != server.api_url  # restored afterwards
    finally:
        process = server.process
        server.stop()
    assert server.process is None and process is not None and process.returncode is not None


def test_configured_api_or_ephemeral_off_means_no_early_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert start_temporary_server() is None
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_ENABLED", "false")
    assert start_temporary_server() is None


def test_a_server_that_dies_is_reported_with_its_exit_code() -> None:
    server = TemporaryServer()
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    with pytest.raises(PrefectServerError, match="exited with code -9"):
        server.wait_ready()
    server.stop()


def test_flows_fall_back_to_prefects_own_server_if_the_early_one_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = TemporaryServer()
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    from prefect import flow

    @flow
    def answer() -> int:
        return 42

    with server.serving() as used:
        assert not used
        assert answer() == 42  # on Prefect's own temporary server
    assert server.process is None


def test_the_server_dies_with_a_killed_owner() -> None:
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from voltloop.orchestrator.prefect_server import start_temporary_server
                server = start_temporary_server()
                server.wait_ready()
                print(server.process.pid, flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
    )
    try:
        line = owner.stdout.readline() if owner.stdout else ""
        assert line.strip().isdigit(), f"owner printed {line!r}"
        server_pid = int(line)
        os.kill(server_pid, 0)  # running
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert _gone(server_pid, 15), "the server outlived its SIGKILLed owner"
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout:
            owner.stdout.close()
