"""The simulated lab's loader over its TCP control port: load, status, truth, attach
(also as the EIS switch of a real run), faults, and refusals with the lab's reason."""

from __future__ import annotations

import socket

import pytest

from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.loader_control import (
    LoaderControlClient,
    LoaderControlError,
    LoaderControlServer,
    parse_url,
)
from voltloop.drivers.sim.virtual_lab import CellSpec
from voltloop.orchestrator.real_run import RealRunError, potentiostat_router

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def served():
    lab = SimulatedLab(channel_count=2, seed=1)
    with LoaderControlServer(lab) as server:
        yield lab, LoaderControlClient(server.url, timeout_s=2.0)


def test_load_status_truth_and_attach(served) -> None:
    lab, hands = served
    assert hands.ping()
    assert hands.info()["cells"] == [None, None]
    hands.load_cell(1, CellSpec(cell_id="cell-7", seed=7))
    status = hands.status(1)
    assert status["state"] == "idle" and status["cell_id"] == "cell-7"
    truth = hands.truth(1)
    assert truth.cell_id == "cell-7" and truth == lab.truth(1)  # the lab's own truth
    potentiostat_router(hands.url)("socket://ignored:1", 1)  # the EIS switch of a real run
    assert lab.potentiostat_channel == 1
    hands.inject_fault(1, "hardware")
    assert hands.status(1)["state"] == "fault"
    hands.clear_fault(1)
    assert hands.status(1)["state"] == "stopped"
    hands.unload_cell(1)
    assert hands.status(1)["state"] == "empty"


def test_refusals_carry_the_labs_reason(served) -> None:
    _, hands = served
    with pytest.raises(LoaderControlError, match="channel 5 out of range 0..1"):
        hands.status(5)
    with pytest.raises(LoaderControlError, match="channel 0 is empty"):
        hands.attach_potentiostat(0)
    with pytest.raises(LoaderControlError, match="'load' needs a 'cell'"):
        hands.request("load", channel=0)
    with pytest.raises(LoaderControlError, match="unknown fault kind"):
        hands.inject_fault(0, "flood")


def test_raw_lines_and_bad_requests(served) -> None:
    _, hands = served
    with socket.create_connection(hands.address, timeout=2.0) as sock:
        stream = sock.makefile("rwb")
        stream.write(b'{"op": "ping"}\n{"op": "explode"}\nnot json\n')
        stream.flush()
        assert stream.readline() == b'{"ok": true, "result": "pong"}\n'
        assert b"bad request: op" in stream.readline()
        assert b'"ok": false' in stream.readline()


def test_urls_and_unreachable_ports() -> None:
    assert parse_url("loader://127.0.0.1:7001") == ("127.0.0.1", 7001)
    for bad in ("socket://127.0.0.1:7001", "loader://host", "loader://:80", "loader://h:99999"):
        with pytest.raises(ValueError, match="loader://HOST:PORT"):
            parse_url(bad)
    with pytest.raises(RealRunError, match="--eis-switch"):
        potentiostat_router("tcp://127.0.0.1:1")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LoaderControlError, match="ping"):
        LoaderControlClient(f"loader://127.0.0.1:{port}", timeout_s=0.5).ping()
