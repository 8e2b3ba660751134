"""Fixtures: a fake lab and a simulated potentiostat served over TCP or a pty."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from potentiostat_fake_lab import FakeLab  # noqa: E402

from voltloop.drivers.potentiostat import PalmSensPotentiostat  # noqa: E402
from voltloop.drivers.sim.potentiostat_server import SimulatedPotentiostatServer  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def lab() -> FakeLab:
    return FakeLab(noise=1e-3, seed=7)


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[SimulatedPotentiostatServer, PalmSensPotentiostat]]]:
    """``serve(lab, link, **server_options)`` → (server, driver); both closed afterwards."""
    opened: list[Any] = []

    def start(
        lab: Any, link: str = "tcp", *, driver_options: dict | None = None, **options: Any
    ) -> tuple[SimulatedPotentiostatServer, PalmSensPotentiostat]:
        server = SimulatedPotentiostatServer(lab, transport=link, **options)
        opened.append(server)
        driver = PalmSensPotentiostat(server.url, timeout_s=1.0, **(driver_options or {}))
        opened.append(driver)
        return server, driver

    yield start
    for item in reversed(opened):
        item.close()
