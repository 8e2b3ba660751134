"""Prefect's temporary API server for a dry run, started before Prefect is imported.

Without ``PREFECT_API_URL`` Prefect runs flows against a temporary local server that
it starts itself, in a subprocess, when the first flow begins: about 3 s of the other
core after 1.4 s spent importing Prefect's server code into our own process, all of
it before the campaign's first step. A dry run starts the same server (the same
``uvicorn`` command and environment as ``prefect.server.api.server.
SubprocessASGIServer``) from its first line, without importing Prefect, so the
server boots on the other core while the campaign loads its models and sets up the
simulated lab; the flows then use it through ``PREFECT_API_URL`` for their duration
(:meth:`TemporaryServer.serving`), and it stops with the dry run
(docs/decisions/0016-early-prefect-server.md).

If Prefect is configured with an API (``PREFECT_API_URL`` in the environment or the
active Prefect profile) or with ephemeral mode off, the early server is never started
(environment) or stopped unused (profile), and Prefect behaves as configured.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("voltloop.prefect_server")

#: Defaults that keep Prefect quiet and offline unless the user configured otherwise.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",  # the temporary server's own chatter
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # the temporary server needs ~3-9 s on 2 idle cores; allow for a busy machine
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}
#: Environment of the server process, as Prefect's own temporary server has it.
_SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}
_FALSE = ("0", "false", "no", "off")
#: Bound on delivering Prefect's queued events and logs when a dry run's flows end, s.
DRAIN_TIMEOUT_S = 30.0


class PrefectServerError(RuntimeError):
    """The temporary server did not come up; the message says why."""

    exit_code = 1


def apply_defaults() -> None:
    """Set :data:`PREFECT_DEFAULTS` where the environment does not say otherwise."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when the thread that started it ends, also by
    SIGKILL of the process, so a killed dry run leaves no server behind (voltloop starts
    it from the main thread, which lives as long as the process)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TemporaryServer:
    """A Prefect API server in a subprocess on a free loopback port."""

    def __init__(self) -> None:
        apply_defaults()
        spec = importlib.util.find_spec("prefect")
        if spec is None or spec.origin is None:
            raise PrefectServerError("Prefect is not installed")
        app_dir = Path(spec.origin).parent.parent  # site-packages, as Prefect passes it
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.timeout_s = float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
        self._ready = False
        # read only if the server fails; closed by stop()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(app_dir),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env={**os.environ, **_SERVER_ENV},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )

    def wait_ready(self) -> None:
        """Block until the server answers its health check (bounded by Prefect's
        ephemeral start-up timeout)."""
        if self._ready:
            return
        process = self.process
        if process is None:
            raise PrefectServerError("the temporary Prefect server was stopped")
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._stderr.seek(max(0, self._stderr.seek(0, os.SEEK_END) - 2000))
                err = self._stderr.read().decode(errors="replace")
                raise PrefectServerError(
                    f"the temporary Prefect server exited with code {process.returncode}"
                    + (f": {err.strip()}" if err.strip() else "")
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        self._ready = True
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise PrefectServerError(
            f"the temporary Prefect server on port {self.port} did not answer within "
            f"{self.timeout_s:g} s (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)"
        )

    @contextlib.contextmanager
    def serving(self) -> Iterator[bool]:
        """Flows run inside use this server. If Prefect is configured with its own API
        or without ephemeral mode, this server is stopped and Prefect does as
        configured; if this server failed to start, Prefect starts its own. Yields
        whether this server is used."""
        from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled:
            self.stop()
            yield False
            return
        try:
            self.wait_ready()
        except PrefectServerError as exc:  # Prefect starts its own and reports its errors
            log.warning("%s; Prefect starts its own temporary server", exc)
            self.stop()
            yield False
            return
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            try:
                yield True
            finally:
                _drain_prefect_workers()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._stderr.close()


def _drain_prefect_workers(timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Deliver the events and logs Prefect still queues to the server before it stops
    (as ``prefect.testing.utilities.prefect_test_harness`` does), so none stay queued
    for a server that is gone (a later flow in the same process would wait on them)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout_s)
        except RuntimeError as exc:  # not started
            log.debug("draining %s: %s", worker.__name__, exc)


def start_temporary_server() -> TemporaryServer | None:
    """Start the temporary server now, unless the environment already points Prefect at
    an API or turns ephemeral mode off (a Prefect profile saying so is honoured later,
    by :meth:`TemporaryServer.serving`)."""
    apply_defaults()
    if os.environ.get("PREFECT_API_URL"):
        return None
    for name in ("PREFECT_SERVER_EPHEMERAL_ENABLED", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"):
        if os.environ.get(name, "").strip().lower() in _FALSE:
            return None
    try:
        return TemporaryServer()
    except (OSError, PrefectServerError) as exc:  # Prefect starts its own and reports
        log.debug("starting Prefect's temporary server early: %s", exc)
        return None
