"""The simulated cycler's command interpreter, message framing and limit checks
(no link, no I/O: messages go straight into ``CyclerServer.interpret``)."""

from __future__ import annotations

import json
import uuid
import zlib

import numpy as np
import pytest

from voltloop.drivers.records import SAMPLE_DTYPE, empty_records
from voltloop.drivers.sim.cycler_scpi import (
    CyclerSession,
    ScpiError,
    next_message,
    parse_header,
)
from voltloop.drivers.sim.cycler_server import CyclerServer
from voltloop.drivers.sim.virtual_lab import ChannelState, ChannelStatus, InstrumentLimits
from voltloop.drivers.transport import encode_block, split_fields

EXP = "0f1e2d3c-4b5a-4697-8877-665544332211"  # fixed: test ids must not vary


class StubLab:
    """Just enough VirtualLab for the interpreter: channel 0 idle, 1 running, 2 empty."""

    channel_count = 3
    limits = InstrumentLimits(max_current_A=5.0, max_voltage_V=4.2, max_steps=8)

    def __init__(self) -> None:
        self.started: list[tuple[int, str, str]] = []
        self.resets = 0
        self.states = [ChannelState.IDLE, ChannelState.RUNNING, ChannelState.EMPTY]
        self.records_made = empty_records(5)
        self.records_made["record"] = np.arange(5)

    def status(self, channel: int) -> ChannelStatus:
        exp = EXP if channel == 1 else None
        return ChannelStatus(channel, self.states[channel], exp, f"c{channel}", 2, 3, 5, 12.5)

    def start(self, channel: int, protocol_json: str, experiment_id: str) -> bool:
        self.started.append((channel, protocol_json, experiment_id))
        return True

    def records(self, channel: int, since: int, limit: int = 100_000) -> np.ndarray:
        return self.records_made[since : since + limit]

    def reset(self) -> None:
        self.resets += 1

    def stop(self, channel: int) -> None:
        raise RuntimeError("relay stuck")


def _protocol(rate_C: float = 1.0, steps: int = 2) -> dict:
    method = [{"step": "constant_current", "rate_C": rate_C, "until_voltage_V": 3.6}]
    method += [{"step": "open_circuit_voltage", "until_time_s": 10}] * (steps - 1)
    return {
        "sample": {"name": "c", "capacity_mAh": 1100},
        "record": {"time_s": 1},
        "method": method,
    }


@pytest.fixture
def server() -> CyclerServer:
    return CyclerServer(StubLab())


def _ask(server: CyclerServer, session: CyclerSession, message: bytes) -> bytes | None:
    return server.interpret(message, session)[1]


def _errors(server: CyclerServer, session: CyclerSession) -> list[int]:
    codes = []
    while True:
        code = int(split_fields(_ask(server, session, b"SYST:ERR?").decode().strip())[0])
        if code == 0:
            return codes
        codes.append(code)


def test_headers_long_and_short_forms() -> None:
    assert parse_header("chan3:stat?") == ("CHAN:STAT?", 3)
    assert parse_header("CHANNEL12:STATUS?") == ("CHAN:STAT?", 12)
    assert parse_header("SYSTem:ERRor?".upper()) == ("SYST:ERR?", None)
    assert parse_header("*idn?") == ("*IDN?", None)
    for bad, code in (("CHAN:STAT?", -114), ("SYST2:ERR?", -114), ("FOO?", -113)):
        with pytest.raises(ScpiError) as info:
            parse_header(bad)
        assert info.value.code == code


def test_framing_takes_blocks_by_length() -> None:
    buf = bytearray(b"CHAN0:SCH " + encode_block(b"a\nb#1") + b"\r\n*OPC?\nSYST")
    assert next_message(buf) == b"CHAN0:SCH #15a\nb#1"
    assert next_message(buf) == b"*OPC?"
    assert next_message(buf) is None and buf == bytearray(b"SYST")
    partial = bytearray(b"CHAN0:SCH #210abc\n")
    assert next_message(partial) is None  # the block's newline is data, not the end


def test_common_commands(server) -> None:
    session = CyclerSession()
    assert _ask(server, session, b"*IDN?") == b"VOLTLOOP,VLC-3,SIM00001,1.0.0\n"
    assert _ask(server, session, b"*OPC?") == b"1\n"
    assert _ask(server, session, b"*TST?") == b"0\n"
    assert _ask(server, session, b"SYST:LIM?") == b"3,5.0,0.0,4.2,80.0,8,4096\n"
    assert _ask(server, session, b"SYST:SYNC? 12345") == b"12345\n"
    assert _ask(server, session, b"*RST") is None and server.lab.resets == 1
    assert _errors(server, session) == []


def test_error_queue_is_a_bounded_fifo(server) -> None:
    session = CyclerSession()
    for _ in range(20):
        assert _ask(server, session, b"BOGUS") is None
    assert _ask(server, session, b"SYST:ERR?") == b'-113,"Undefined header; BOGUS"\n'
    codes = _errors(server, session)
    assert len(codes) == 15 and codes[-1] == -350
    _ask(server, session, b"BOGUS")
    _ask(server, session, b"*CLS")
    assert _errors(server, session) == []


def test_upload_validates_and_start_hands_over(server) -> None:
    session = CyclerSession()
    payload = {"experiment_id": EXP.upper(), "protocol": _protocol(), "max_temperature_C": 50}
    block = encode_block(json.dumps(payload).encode())
    exp = str(uuid.uuid4())
    assert _ask(server, session, b"CHAN0:SCH " + block) is None
    assert _errors(server, session) == []
    assert _ask(server, session, f'CHAN0:STAR "{exp}"'.encode()) is None
    assert _errors(server, session) == [-221]  # staged for EXP, not exp
    _ask(server, session, f'CHAN0:STAR "{EXP}"'.encode())
    assert _errors(server, session) == []
    channel, protocol_json, experiment = server.lab.started[0]
    assert (channel, experiment) == (0, EXP)
    assert json.loads(protocol_json)["voltloop"] == {"max_temperature_C": 50}


@pytest.mark.parametrize(
    ("payload", "code", "text"),
    [
        (b"not json", -161, "not the documented JSON"),
        (json.dumps({"experiment_id": "x", "protocol": _protocol()}).encode(), -224, "UUID"),
        (json.dumps({"experiment_id": EXP, "protocol": {"method": 3}}).encode(), -224, "protocol"),
        (json.dumps({"experiment_id": EXP, "protocol": _protocol(rate_C=5)}).encode(), -222,
         "method[0] constant_current: current 5.5 A exceeds max_current_A 5.0"),
        (json.dumps({"experiment_id": EXP, "protocol": _protocol(steps=9)}).encode(), -222,
         "9 method steps exceed max_steps 8"),
        (json.dumps({"experiment_id": EXP, "protocol": _protocol(),
                     "max_temperature_C": 90}).encode(), -222, "max_temperature_C 90"),
    ],
    ids=["bad-json", "bad-uuid", "bad-protocol", "current", "steps", "temperature"],
)  # fmt: skip
def test_upload_errors_name_the_problem(server, payload, code, text) -> None:
    session = CyclerSession()
    _ask(server, session, b"CHAN0:SCH " + encode_block(payload))
    reply = _ask(server, session, b"SYST:ERR?").decode()
    assert reply.startswith(f"{code},") and text in reply
    assert 0 not in session.staged


def test_start_rules(server) -> None:
    session = CyclerSession()
    _ask(server, session, f'CHAN1:STAR "{EXP}"'.encode())  # same experiment: no-op
    _ask(server, session, f'CHAN1:STAR "{uuid.uuid4()}"'.encode())
    _ask(server, session, f'CHAN2:STAR "{uuid.uuid4()}"'.encode())
    _ask(server, session, b'CHAN0:STAR "nope"')
    _ask(server, session, b"CHAN7:STAR")
    assert _errors(server, session) == [-213, -241, -224, -109]
    assert server.lab.started == []


def test_status_and_data_replies(server) -> None:
    session = CyclerSession()
    reply = _ask(server, session, b"CHAN1:STAT?").decode()
    assert reply == f'running,"{EXP}",2,3,5,12.5,"c1",""\n'
    data = _ask(server, session, b"CHAN1:DATA? 1,3")
    rows = server.lab.records_made[1:4].tobytes()
    assert data == f'"{EXP}",1,3,{zlib.crc32(rows):08X},'.encode() + encode_block(rows) + b"\n"
    assert len(rows) == 3 * SAMPLE_DTYPE.itemsize
    never = _ask(server, session, b"CHAN0:DATA? 0")
    assert never == b'"",0,0,00000000,#10\n'
    assert _ask(server, session, b"CHAN9:DATA? 0") is None
    assert _ask(server, session, b"CHAN1:DATA? -1") is None
    assert _errors(server, session) == [-222, -222]


def test_resume_needs_waiting_eis_and_internal_failures_are_queued(server) -> None:
    session = CyclerSession()
    _ask(server, session, b"CHAN1:RES")
    _ask(server, session, b"CHAN1:STOP")  # the stub's relay is stuck
    reply = _ask(server, session, b"SYST:ERR?").decode()
    assert reply.startswith('-221,"Settings conflict; channel 1 is running')
    reply = _ask(server, session, b"SYST:ERR?").decode()
    assert reply.startswith("-300,") and "relay stuck" in reply
    assert _ask(server, session, b"*IDN?").startswith(b"VOLTLOOP")  # still alive


def test_fetch_reply_for_several_channels(server) -> None:
    session = CyclerSession()
    reply = _ask(server, session, b"FETCH? 3,1,1,0,0")
    rows = server.lab.records_made[1:4].tobytes()
    head = f'2,"{EXP}",1,3,"",0,0,{zlib.crc32(rows):08X},'.encode()
    assert reply == head + encode_block(rows) + b"\n"
    assert _ask(server, session, b"FETC? 2,1,4") == (
        f'1,"{EXP}",4,1,'.encode()
        + f"{zlib.crc32(server.lab.records_made[4:].tobytes()):08X},".encode()
        + encode_block(server.lab.records_made[4:].tobytes())
        + b"\n"
    )
    assert _errors(server, session) == []


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"FETC? 10", -109),  # no channel
        (b"FETC? 10,1", -109),  # channel without since
        (b"FETC? 10,1,0,1,0", -224),  # a channel twice
        (b"FETC? 10,9,0", -222),  # no such channel
        (b"FETC? 0,1,0", -222),  # max < 1
        (b"FETC? 10,1,x", -102),
        (b"FETC? 10,0,0,1,0,2,0,0", -108),  # more pairs than channels
    ],
)
def test_fetch_errors_send_no_reply(server, message: bytes, code: int) -> None:
    session = CyclerSession()
    assert _ask(server, session, message) is None
    assert _errors(server, session) == [code]
