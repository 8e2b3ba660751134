"""Transport framing, timeouts, garbled/partial detection and retries (fake port, no I/O)."""

from __future__ import annotations

import zlib

import pytest

from voltloop.drivers.errors import (
    Disconnected,
    InstrumentError,
    ProtocolError,
    TransportTimeout,
)
from voltloop.drivers.testing import ExchangeMismatchError, ExpectedExchangePort, expected_exchange
from voltloop.drivers.transport import Transcript, Transport, encode_block


def test_encode_block_matches_ieee488_example() -> None:
    assert encode_block(b'{"a": "bcde"}') == b'#213{"a": "bcde"}'
    assert encode_block(b"") == b"#10"


def test_query_line_strips_terminator_and_cr() -> None:
    with expected_exchange([(b"*IDN?\n", b"VOLTLOOP,VLC-8,SIM1,1.0.0\r\n")]) as t:
        assert t.query("*IDN?") == "VOLTLOOP,VLC-8,SIM1,1.0.0"


def test_configurable_terminator() -> None:
    with expected_exchange([(b"t\r", b"espbl1.3\r")], terminator=b"\r") as t:
        assert t.query("t") == "espbl1.3"


def test_command_with_block() -> None:
    with expected_exchange([(b"CHAN1:SCH #15hello\n", None)]) as t:
        t.command("CHAN1:SCH", block=b"hello")


def test_block_reply_is_read_exactly_even_with_newlines_inside() -> None:
    payload = b"ab\ncd\n#9"
    reply = b'"x",0,2,' + encode_block(payload) + b"\n"
    with expected_exchange([(b"DATA?\n", reply)]) as t:
        block = t.query_block("DATA?")
        assert block.prefix == '"x",0,2,'
        assert block.data == payload


def test_timeout_is_typed_and_bounded() -> None:
    with (
        expected_exchange([(b"*OPC?\n", None)], timeout_s=0.05) as t,
        pytest.raises(TransportTimeout),
    ):
        t.query("*OPC?")


def test_partial_line_is_a_protocol_error() -> None:
    with (
        expected_exchange([(b"*OPC?\n", b"1")], timeout_s=0.05) as t,
        pytest.raises(ProtocolError, match="partial"),
    ):
        t.query("*OPC?")


@pytest.mark.parametrize("garbage", [b"1\xff\n", b"\x80ok\n", b"a\x00b\n"])
def test_non_ascii_reply_is_a_protocol_error(garbage: bytes) -> None:
    with (
        expected_exchange([(b"*OPC?\n", garbage)]) as t,
        pytest.raises(ProtocolError, match="garbled"),
    ):
        t.query("*OPC?")


def test_idempotent_query_is_retried_after_garbage_and_stale_bytes_are_drained() -> None:
    pairs = [(b"STAT?\n", b"runn\xffing\n"), (b"STAT?\n", b"running\n")]
    with expected_exchange(pairs, retries=2, backoff_s=0.0) as t:
        assert t.query("STAT?", idempotent=True) == "running"


def test_non_idempotent_query_is_not_retried() -> None:
    pairs = [(b"SYST:ERR?\n", b"0,\xff\n")]
    with expected_exchange(pairs, retries=3) as t, pytest.raises(ProtocolError):
        t.query("SYST:ERR?")


def test_resync_hook_runs_before_the_next_command_after_a_timeout() -> None:
    calls: list[str] = []

    def resync(transport: Transport) -> None:
        transport.write(b"SYNC? 1\n")
        while transport.read_line() != "1":
            pass
        calls.append("resync")

    pairs = [
        (b"A?\n", None),  # times out
        (b"SYNC? 1\n", b"late answer to A\n1\n"),
        (b"B?\n", b"b\n"),
    ]
    with expected_exchange(pairs, timeout_s=0.05, resync=resync) as t:
        with pytest.raises(TransportTimeout):
            t.query("A?")
        assert t.query("B?") == "b"
    assert calls == ["resync"]


def test_fake_port_fails_on_unexpected_bytes() -> None:
    port = ExpectedExchangePort([(b"*IDN?\n", b"x\n")])
    with pytest.raises(ExchangeMismatchError, match="expected"):
        port.write(b"*RST\n")


def test_fake_port_fails_on_missing_exchange() -> None:
    with (
        pytest.raises(ExchangeMismatchError, match="never sent"),
        expected_exchange([(b"*IDN?\n", b"x\n"), (b"*OPC?\n", b"1\n")]) as t,
    ):
        t.query("*IDN?")


def test_fake_port_fails_on_extra_write() -> None:
    with pytest.raises(ExchangeMismatchError, match="extra"), expected_exchange([]) as t:
        t.command("*CLS")


class _BrokenPort(ExpectedExchangePort):
    def read(self, size: int = 1) -> bytes:
        raise OSError(5, "Input/output error")


def test_os_error_maps_to_disconnected_and_reconnect_is_attempted() -> None:
    opened: list[int] = []

    def factory() -> ExpectedExchangePort:
        opened.append(1)
        if len(opened) > 1:
            raise OSError(2, "No such file or directory")
        return _BrokenPort([(b"*OPC?\n", None)])

    t = Transport("broken://", port_factory=factory, retries=1, backoff_s=0.0, reconnect_attempts=2)
    t.open()
    with pytest.raises(Disconnected):
        t.query("*OPC?", idempotent=True)
    assert len(opened) == 3  # first open, then two reconnect attempts
    assert not t.is_open


def test_transcript_records_both_directions(tmp_path) -> None:
    log = tmp_path / "cycler.log"
    transcript = Transcript(log)
    with expected_exchange([(b"*OPC?\n", b"1\n")], transcript=transcript) as t:
        t.query("*OPC?")
    text = log.read_text()
    assert "> b'*OPC?\\n'" in text and "< b'1\\n'" in text
    assert len(transcript.lines()) >= 3


def test_disabled_transcript_records_nothing() -> None:
    transcript = Transcript(enabled=False)
    with expected_exchange([(b"*OPC?\n", b"1\n")], transcript=transcript) as t:
        t.query("*OPC?")
    assert transcript.lines() == []


def test_errors_carry_exit_code_and_scpi_code() -> None:
    err = InstrumentError(-222, "Data out of range; channel 9", command="CHAN9:STOP", url="u")
    assert err.code == -222 and err.exit_code == 1
    assert "channel 9" in str(err) and "CHAN9:STOP" in str(err)
    for cls in (TransportTimeout, ProtocolError, Disconnected):
        assert cls("x").exit_code == 1


def test_block_crc_helper_consistency() -> None:
    assert f"{zlib.crc32(b'abc'):08X}" == "352441C2"


def test_a_block_longer_than_max_block_bytes_is_refused_before_reading_it() -> None:
    with (
        expected_exchange([(b"DATA?\n", b'"x",#9100000000')], max_block_bytes=1 << 20) as t,
        pytest.raises(ProtocolError, match="max_block_bytes"),
    ):
        t.query_block("DATA?")
