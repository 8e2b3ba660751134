"""Byte-exact exchanges for every CyclerDriver command (pymeasure style: the exact
bytes sent, the reply, and nothing else)."""

from __future__ import annotations

import json
import random
import uuid
import zlib
from collections.abc import Sequence

import numpy as np
import pytest
from aurora_unicycler import CyclingProtocol

from voltloop.drivers.cycler import CyclerDriver
from voltloop.drivers.errors import DriverInputError, InstrumentError, ProtocolError
from voltloop.drivers.interfaces import ChannelState, Cycler, StartOutcome
from voltloop.drivers.records import SAMPLE_DTYPE, empty_records
from voltloop.drivers.testing import expected_exchange
from voltloop.drivers.transport import encode_block

EXP = "8d9f1c5e-3f7b-4a52-9a53-0c2f6b1d7e10"
OTHER = "0b6c2a4e-1111-4222-8333-944455556666"
OK = b'0,"No error"\n'
LIM = (b"SYST:LIM?\n", b"8,10.0,0.0,5.0,80.0,256,4096\n")


def _driver(pairs: Sequence[tuple[bytes | None, bytes | None]], **options):
    return expected_exchange(pairs, **options)


def _protocol() -> CyclingProtocol:
    return CyclingProtocol.model_validate(
        {
            "sample": {"name": "c", "capacity_mAh": 1100},
            "record": {"time_s": 10},
            "method": [
                {"step": "constant_current", "rate_C": 1, "until_voltage_V": 3.6},
                {"step": "constant_current", "rate_C": -1, "until_voltage_V": 2.0},
            ],
        }
    )


def _schedule_block(exp: str = EXP, max_t: float | None = None) -> bytes:
    payload = json.dumps(
        {
            "experiment_id": exp,
            "protocol": _protocol().model_dump(mode="json"),
            "max_temperature_C": max_t,
        },
        separators=(",", ":"),
    ).encode()
    return encode_block(payload)


def _status(state: str = "idle", exp: str = "", records: int = 0) -> bytes:
    return f'{state},"{exp}",0,0,{records},0.0,"cell-1",""\n'.encode()


def _records(since: int, n: int) -> np.ndarray:
    rec = empty_records(n)
    rec["record"] = np.arange(since, since + n)
    rec["t_s"] = rec["record"] * 10.0
    rec["voltage_V"] = 3.3
    return rec


def _data_reply(since: int, rec: np.ndarray, exp: str = EXP, crc: int | None = None) -> bytes:
    data = rec.tobytes()
    crc = zlib.crc32(data) if crc is None else crc
    return f'"{exp}",{since},{len(rec)},{crc:08X},'.encode() + encode_block(data) + b"\n"


def test_driver_satisfies_the_cycler_protocol() -> None:
    with _driver([]) as t:
        assert isinstance(CyclerDriver("x", transport=t), Cycler)


def test_identify() -> None:
    with _driver([(b"*IDN?\n", b"VOLTLOOP,VLC-8,SIM00001,1.0.0\n")]) as t:
        idn = CyclerDriver("x", transport=t).identify()
    assert (idn.maker, idn.model, idn.serial, idn.firmware) == (
        "VOLTLOOP",
        "VLC-8",
        "SIM00001",
        "1.0.0",
    )
    assert idn.idn == "VOLTLOOP,VLC-8,SIM00001,1.0.0"


def test_limits_are_parsed_and_cached() -> None:
    with _driver([LIM]) as t:
        driver = CyclerDriver("x", transport=t)
        lim = driver.limits()
        assert driver.limits() is lim  # no second query
    assert lim.channels == 8 and lim.max_current_A == 10.0 and lim.max_batch == 4096


def test_self_test_pass_and_fail() -> None:
    with _driver([(b"*TST?\n", b"0\n")]) as t:
        assert CyclerDriver("x", transport=t).self_test().passed
    pairs = [
        (b"*TST?\n", b"1\n"),
        (b"SYST:ERR?\n", b'-330,"Self-test failed; channel 2 in fault: hardware"\n'),
        (b"SYST:ERR?\n", OK),
    ]
    with _driver(pairs) as t:
        result = CyclerDriver("x", transport=t).self_test()
    assert not result.passed and result.code == 1
    assert result.messages == ("-330,Self-test failed; channel 2 in fault: hardware",)


def test_status() -> None:
    reply = f'running,"{EXP}",12,4,5234,52310.5,"cell-07","a ""quoted"" reason"\n'.encode()
    with _driver([(b"CHAN3:STAT?\n", reply)]) as t:
        s = CyclerDriver("x", transport=t).status(3)
    assert s.state is ChannelState.RUNNING and s.experiment_id == uuid.UUID(EXP)
    assert (s.cycle, s.step, s.record_count, s.t_s) == (12, 4, 5234, 52310.5)
    assert s.cell_id == "cell-07" and s.reason == 'a "quoted" reason'


def test_start_uploads_then_starts_and_drains_errors() -> None:
    pairs = [
        (b"CHAN1:STAT?\n", _status()),
        (b"CHAN1:SCH " + _schedule_block(max_t=45.0) + b"\n", None),
        (b"SYST:ERR?\n", OK),
        (f'CHAN1:STAR "{EXP}"\n'.encode(), None),
        (b"SYST:ERR?\n", OK),
    ]
    with _driver(pairs) as t:
        outcome = CyclerDriver("x", transport=t).start(1, _protocol(), EXP, max_temperature_C=45.0)
    assert outcome is StartOutcome.STARTED


def test_start_same_experiment_is_a_no_op() -> None:
    with _driver([(b"CHAN1:STAT?\n", _status("running", EXP, 10))]) as t:
        outcome = CyclerDriver("x", transport=t).start(1, _protocol().model_dump(), uuid.UUID(EXP))
    assert outcome is StartOutcome.ALREADY_RUNNING


def test_start_on_busy_channel_raises_with_scpi_code() -> None:
    busy = f'-213,"Init ignored; channel 1 busy with experiment {OTHER}"\n'.encode()
    pairs = [
        (b"CHAN1:STAT?\n", _status("running", OTHER)),
        (b"CHAN1:SCH " + _schedule_block() + b"\n", None),
        (b"SYST:ERR?\n", OK),
        (f'CHAN1:STAR "{EXP}"\n'.encode(), None),
        (b"SYST:ERR?\n", busy),
        (b"SYST:ERR?\n", OK),
    ]
    with _driver(pairs) as t, pytest.raises(InstrumentError) as info:
        CyclerDriver("x", transport=t).start(1, _protocol(), EXP)
    assert info.value.code == -213 and "busy" in str(info.value)


def test_start_reuploads_when_the_staged_schedule_was_lost() -> None:
    lost = f'-221,"Settings conflict; no schedule staged for {EXP} on channel 1"\n'.encode()
    upload = [(b"CHAN1:SCH " + _schedule_block() + b"\n", None), (b"SYST:ERR?\n", OK)]
    start = (f'CHAN1:STAR "{EXP}"\n'.encode(), None)
    pairs = [
        (b"CHAN1:STAT?\n", _status()),
        *upload,
        start,
        (b"SYST:ERR?\n", lost),
        (b"SYST:ERR?\n", OK),
        *upload,
        start,
        (b"SYST:ERR?\n", OK),
    ]
    with _driver(pairs) as t:
        assert CyclerDriver("x", transport=t).start(1, _protocol(), EXP) is StartOutcome.STARTED


def test_upload_error_is_raised_before_start() -> None:
    err = (
        b'-222,"Data out of range; method[0] constant_current: '
        b'current 11 A exceeds max_current_A 10.0"\n'
    )
    pairs = [
        (b"CHAN1:STAT?\n", _status()),
        (b"CHAN1:SCH " + _schedule_block() + b"\n", None),
        (b"SYST:ERR?\n", err),
        (b"SYST:ERR?\n", OK),
    ]
    with _driver(pairs) as t, pytest.raises(InstrumentError, match="max_current_A") as info:
        CyclerDriver("x", transport=t).start(1, _protocol(), EXP)
    assert info.value.code == -222


def test_invalid_inputs_send_nothing() -> None:
    with _driver([]) as t:
        driver = CyclerDriver("x", transport=t)
        with pytest.raises(DriverInputError):
            driver.start(1, _protocol(), "not-a-uuid")
        with pytest.raises(DriverInputError):
            driver.status(-1)
        with pytest.raises(DriverInputError, match="unicycler"):
            driver.start(1, {"method": 3}, EXP)
        with pytest.raises(DriverInputError):
            driver.fetch(0, -5)


def test_channel_checked_against_limits_once_known() -> None:
    with _driver([LIM]) as t:
        driver = CyclerDriver("x", transport=t)
        driver.limits()
        with pytest.raises(DriverInputError, match="0-7"):
            driver.stop(8)


def test_stop_resume_reset() -> None:
    pairs = [
        (b"CHAN2:STOP\n", None),
        (b"SYST:ERR?\n", OK),
        (b"CHAN2:RES\n", None),
        (b"SYST:ERR?\n", OK),
        (b"*RST\n", None),
        (b"SYST:ERR?\n", OK),
    ]
    with _driver(pairs) as t:
        driver = CyclerDriver("x", transport=t)
        driver.stop(2)
        driver.resume(2)
        driver.reset()


def test_resume_when_not_waiting_raises() -> None:
    pairs = [
        (b"CHAN2:RES\n", None),
        (b"SYST:ERR?\n", b'-221,"Settings conflict; channel 2 is running, not waiting_eis"\n'),
        (b"SYST:ERR?\n", OK),
    ]
    with _driver(pairs) as t, pytest.raises(InstrumentError, match="waiting_eis"):
        CyclerDriver("x", transport=t).resume(2)


def test_fetch_single_batch() -> None:
    rec = _records(120, 2)
    with _driver([LIM, (b"CHAN3:DATA? 120,4096\n", _data_reply(120, rec))]) as t:
        batch = CyclerDriver("x", transport=t).fetch(3, 120)
    assert batch.experiment_id == uuid.UUID(EXP) and batch.next_index == 122
    assert batch.records.dtype == SAMPLE_DTYPE
    np.testing.assert_array_equal(batch.records, rec)


def test_fetch_loops_over_batches_until_short() -> None:
    lim = (b"SYST:LIM?\n", b"8,10.0,0.0,5.0,80.0,256,3\n")
    pairs = [
        lim,
        (b"CHAN0:DATA? 0,3\n", _data_reply(0, _records(0, 3))),
        (b"CHAN0:DATA? 3,3\n", _data_reply(3, _records(3, 3))),
        (b"CHAN0:DATA? 6,3\n", _data_reply(6, _records(6, 1))),
    ]
    with _driver(pairs) as t:
        batch = CyclerDriver("x", transport=t).fetch(0, 0, experiment_id=EXP)
    assert list(batch.records["record"]) == list(range(7))


def test_fetch_with_limit() -> None:
    with _driver([LIM, (b"CHAN0:DATA? 5,2\n", _data_reply(5, _records(5, 2)))]) as t:
        batch = CyclerDriver("x", transport=t).fetch(0, 5, limit=2)
    assert batch.next_index == 7


def test_fetch_retries_a_block_with_a_bad_crc() -> None:
    rec = _records(0, 4)
    pairs = [
        LIM,
        (b"CHAN0:DATA? 0,4096\n", _data_reply(0, rec, crc=0xDEADBEEF)),
        (b"\n*CLS\nSYST:SYNC? ", None),
    ]
    token = random.Random(7).randrange(1, 2**31)
    pairs[-1] = (f"\n*CLS\nSYST:SYNC? {token}\n".encode(), f"{token}\n".encode())
    pairs.append((b"CHAN0:DATA? 0,4096\n", _data_reply(0, rec)))
    with _driver(pairs, retries=2, backoff_s=0.0) as t:
        batch = CyclerDriver("x", transport=t, sync_seed=7).fetch(0, 0)
    np.testing.assert_array_equal(batch.records, rec)


def test_fetch_refuses_records_of_another_experiment() -> None:
    reply = _data_reply(0, _records(0, 1), exp=OTHER)
    with (
        _driver([LIM, (b"CHAN0:DATA? 0,4096\n", reply)]) as t,
        pytest.raises(InstrumentError, match="holds experiment"),
    ):
        CyclerDriver("x", transport=t).fetch(0, 0, experiment_id=EXP)


def test_fetch_detects_non_contiguous_indices() -> None:
    rec = _records(0, 3)
    rec["record"][2] = 7
    with (
        _driver([LIM, (b"CHAN0:DATA? 0,4096\n", _data_reply(0, rec))], retries=0) as t,
        pytest.raises(ProtocolError, match="contiguous"),
    ):
        CyclerDriver("x", transport=t).fetch(0, 0)


def test_fetch_of_a_channel_that_never_ran() -> None:
    reply = b'"",0,0,00000000,#10\n'
    with _driver([LIM, (b"CHAN0:DATA? 0,4096\n", reply)]) as t:
        batch = CyclerDriver("x", transport=t).fetch(0, 0)
    assert batch.experiment_id is None and len(batch.records) == 0


def test_error_queue_drain_reports_every_error() -> None:
    pairs = [
        (b"CHAN2:STOP\n", None),
        (b"SYST:ERR?\n", b'-222,"Data out of range; channel 2"\n'),
        (b"SYST:ERR?\n", b'-350,"Queue overflow"\n'),
        (b"SYST:ERR?\n", OK),
    ]
    with _driver(pairs) as t, pytest.raises(InstrumentError, match="Queue overflow") as info:
        CyclerDriver("x", transport=t).stop(2)
    assert info.value.code == -222


def test_timeout_then_resync_discards_the_late_reply() -> None:
    token = random.Random(3).randrange(1, 2**31)
    pairs = [
        (b"CHAN0:STAT?\n", None),  # reply comes late ...
        (f"\n*CLS\nSYST:SYNC? {token}\n".encode(), _status("idle") + f"{token}\n".encode()),
        (b"CHAN0:STAT?\n", _status("running", EXP)),
    ]
    with _driver(pairs, timeout_s=0.05, retries=1, backoff_s=0.0) as t:
        status = CyclerDriver("x", transport=t, sync_seed=3).status(0)
    assert status.state is ChannelState.RUNNING


def _fetch_reply(parts: list[tuple[str, int, np.ndarray]], crc: int | None = None) -> bytes:
    data = b"".join(rec.tobytes() for _, _, rec in parts)
    crc = zlib.crc32(data) if crc is None else crc
    heads = ",".join(f'"{exp}",{since},{len(rec)}' for exp, since, rec in parts)
    return f"{len(parts)},{heads},{crc:08X},".encode() + encode_block(data) + b"\n"


def test_fetch_many_asks_once_for_all_channels_and_again_for_full_ones() -> None:
    lim = (b"SYST:LIM?\n", b"8,10.0,0.0,5.0,80.0,256,3\n")
    pairs = [
        lim,
        (
            b"FETC? 3,0,10,2,0,5,7\n",
            _fetch_reply(
                [(EXP, 10, _records(10, 3)), ("", 0, _records(0, 0)), (OTHER, 7, _records(7, 1))]
            ),
        ),
        (b"FETC? 3,0,13\n", _fetch_reply([(EXP, 13, _records(13, 2))])),
    ]
    with _driver(pairs) as t:
        batches = CyclerDriver("x", transport=t).fetch_many(
            {0: 10, 2: 0, 5: 7}, experiment_ids={0: EXP}
        )
    assert list(batches) == [0, 2, 5]
    assert list(batches[0].records["record"]) == list(range(10, 15))
    assert batches[0].experiment_id == uuid.UUID(EXP) and batches[0].next_index == 15
    assert batches[2].experiment_id is None and len(batches[2].records) == 0
    assert batches[5].experiment_id == uuid.UUID(OTHER) and batches[5].since == 7
    np.testing.assert_array_equal(batches[5].records, _records(7, 1))


def test_fetch_many_retries_a_bad_crc_and_refuses_another_experiment() -> None:
    parts = [(EXP, 0, _records(0, 2)), (OTHER, 4, _records(4, 1))]
    token = random.Random(7).randrange(1, 2**31)
    pairs = [
        LIM,
        (b"FETC? 4096,0,0,1,4\n", _fetch_reply(parts, crc=0x12345678)),
        (f"\n*CLS\nSYST:SYNC? {token}\n".encode(), f"{token}\n".encode()),
        (b"FETC? 4096,0,0,1,4\n", _fetch_reply(parts)),
    ]
    with (
        _driver(pairs, retries=2, backoff_s=0.0) as t,
        pytest.raises(InstrumentError, match="channel 1 holds experiment"),
    ):
        CyclerDriver("x", transport=t, sync_seed=7).fetch_many(
            {0: 0, 1: 4}, experiment_ids={1: EXP}
        )


@pytest.mark.parametrize(
    "reply",
    [
        _fetch_reply([(EXP, 0, _records(0, 2)), (EXP, 5, _records(5, 1))]),  # wrong since
        _fetch_reply([(EXP, 0, _records(0, 2))]),  # one channel missing
        _fetch_reply([(EXP, 0, _records(1, 2)), (EXP, 4, _records(4, 1))]),  # indices
        # the count says 3 channels, two follow
        b"3" + _fetch_reply([(EXP, 0, _records(0, 2)), (EXP, 4, _records(4, 1))])[1:],
    ],
)
def test_fetch_many_rejects_replies_that_do_not_answer_the_question(reply: bytes) -> None:
    with (
        _driver([LIM, (b"FETC? 4096,0,0,1,4\n", reply)], retries=0) as t,
        pytest.raises(ProtocolError),
    ):
        CyclerDriver("x", transport=t).fetch_many({0: 0, 1: 4})


def test_fetch_many_reads_a_header_with_spaces_like_the_usual_one() -> None:
    """The driver reads the usual header with two regular expressions and any other
    well-formed element list (spaces, quoted ids that are not UUIDs) field by field."""
    parts = [(EXP, 0, _records(0, 2)), (EXP, 4, _records(4, 1))]
    usual = _fetch_reply(parts)
    spaced = usual.replace(b",", b" , ", 2 * len(parts))
    assert spaced != usual
    got = []
    for reply in (usual, spaced):
        with _driver([LIM, (b"FETC? 4096,0,0,1,4\n", reply)], retries=0) as t:
            got.append(CyclerDriver("x", transport=t).fetch_many({0: 0, 1: 4}))
    for channel in (0, 1):
        np.testing.assert_array_equal(got[0][channel].records, got[1][channel].records)
        assert got[0][channel].experiment_id == got[1][channel].experiment_id


def test_fetch_many_checks_inputs_before_sending() -> None:
    with _driver([]) as t:
        driver = CyclerDriver("x", transport=t)
        with pytest.raises(DriverInputError):
            driver.fetch_many({0: -1})
        with pytest.raises(DriverInputError):
            driver.fetch_many({-2: 0})
        assert driver.fetch_many({}) == {}
