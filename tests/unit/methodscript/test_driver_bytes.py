"""The potentiostat driver byte by byte (pymeasure style): exact bytes sent, scripted
replies, nothing extra. Uses the expected-exchange port of voltloop.drivers.testing."""

from __future__ import annotations

import time

import pytest

from voltloop.drivers import methodscript as ms
from voltloop.drivers import potentiostat_scripts as ps
from voltloop.drivers.eis import EisSpec
from voltloop.drivers.errors import InstrumentError, ProtocolError, TransportTimeout
from voltloop.drivers.potentiostat import PalmSensPotentiostat
from voltloop.drivers.testing import expected_exchange

EIS_3_POINTS = (
    b"e\n"
    b"# voltloop EIS 1000 Hz -> 10 Hz, 3 points, 5 mV rms, DC 3.3 V\n"
    b"var f\nvar r\nvar j\n"
    b"set_pgstat_chan 0\nset_pgstat_mode 3\nset_max_bandwidth 10k\n"
    b"set_range ab 4\nset_autoranging ab 4 4\n"
    b"set_range_minmax da 3300m 3300m\nset_range ba 100m\nset_autoranging ba 1m 100m\n"
    b"set_e 3300m\ncell_on\n"
    b"meas_loop_eis f r j 5m 1k 10 3i 3300m\n"
    b"  pck_start\n  pck_add f\n  pck_add r\n  pck_add j\n  pck_end\n"
    b"endloop\non_finished:\n  cell_off\n\n"
)
EIS_3_REPLY = (
    b"eM0007\n"
    b"Pdc80F4240m;cc97EFEE0n,10,21B;cd7F9E580n,10\n"
    b"PdcDF5E100u;cc998EF80n,10,21B;cd7EF3720n,10\n"
    b"Pdc8989680u;cc9E6C160n,12,21B;cd7BFE9C0n,12\n"
    b"*\n"
    b"\n"
)
SPEC_3 = EisSpec(f_start_Hz=1e3, f_end_Hz=10, points_per_decade=1, dc_potential_V=3.3)
SYNC_IDLE = (b"\nZ\n", b"Z!0006\n")


def driver(transport, **kwargs) -> PalmSensPotentiostat:
    options = {"device": ms.DeviceModel.EMSTAT4_HR, "analyse": False, "measurement_retries": 0}
    options.update(kwargs)
    return PalmSensPotentiostat("expected://", transport=transport, **options)


def test_identify() -> None:
    with expected_exchange([(b"t\n", b"tes4_hr1.3 build 42\n#Nov 22 2026 04:00:00*\n")]) as port:
        identity = driver(port, device=None).identify()
    assert identity.model == "EmStat4 HR" and identity.maker == "PalmSens"
    assert identity.firmware == "es4_hr1.3 build 42 #Nov 22 2026 04:00:00"


def test_identify_learns_the_device_limits() -> None:
    with expected_exchange([(b"t\n", b"tespico1.2\n#2019*\n")]) as port:
        pico = driver(port, device=None)
        assert pico.limits.model is ms.DeviceModel.EMSTAT_PICO


def test_unknown_device_is_identified_once_and_validated_as_emstat4_hr() -> None:
    with expected_exchange([(b"t\n", b"tnexus1.0\n#2024*\n")]) as port:
        nexus = driver(port, device=None)
        assert nexus.limits.model is ms.DeviceModel.EMSTAT4_HR
        assert nexus.limits.model is ms.DeviceModel.EMSTAT4_HR  # no second 't'
        assert nexus.firmware == "nexus1.0 #2024"


def test_eis_exact_bytes_and_decoded_spectrum() -> None:
    with expected_exchange([(EIS_3_POINTS, EIS_3_REPLY)]) as port:
        spectrum = driver(port).eis(SPEC_3)
    assert spectrum.frequencies_Hz == pytest.approx([1000, 100, 10])
    assert spectrum.z_real_ohm == pytest.approx([0.0251, 0.0268, 0.0319])
    assert spectrum.z_imag_ohm == pytest.approx([-0.0004, -0.0011, -0.0042])
    assert spectrum.status == [0, 0, int(ms.StatusFlag.OVERLOAD)]
    assert spectrum.current_range == [0x1B, 0x1B, 0x1B]
    assert spectrum.complete and spectrum.spec == SPEC_3


def test_eis_refused_by_the_device_raises_instrument_error_with_the_code() -> None:
    reply = b"e\n!4005: Line 12, Col 27\n\n"
    with expected_exchange([(EIS_3_POINTS, reply)]) as port, pytest.raises(InstrumentError) as info:
        driver(port).eis(SPEC_3)
    assert info.value.code == 0x4005 and "Line 12" in str(info.value)


def test_eis_outside_device_limits_fails_before_any_byte() -> None:
    with expected_exchange([]) as port, pytest.raises(ps.ScriptValidationError, match="f_start_Hz"):
        driver(port, device=ms.DeviceModel.EMSTAT_PICO).eis(EisSpec(f_start_Hz=1e6, f_end_Hz=1))


def test_wrong_sweep_frequency_is_a_protocol_error_and_the_driver_resyncs() -> None:
    wrong = EIS_3_REPLY.replace(b"PdcDF5E100u", b"Pdc80F4240m")  # 1000 Hz twice
    exchange = [(EIS_3_POINTS, wrong), SYNC_IDLE]
    with expected_exchange(exchange) as port, pytest.raises(ProtocolError, match="EIS point 1"):
        driver(port).eis(SPEC_3)


def test_garbled_output_is_a_protocol_error_then_abort_and_sync() -> None:
    garbled = EIS_3_REPLY.replace(b"PdcDF5E100u", b"PdcDF5\xe9100u")
    exchange = [(EIS_3_POINTS, garbled), SYNC_IDLE]
    with expected_exchange(exchange) as port, pytest.raises(ProtocolError, match="garbled"):
        driver(port).eis(SPEC_3)


def test_silent_device_times_out_within_the_point_budget() -> None:
    # 'e' accepted, then nothing: the first point (1 kHz) has a budget of 3 x (4 ms + 0.5 s)
    with expected_exchange([(EIS_3_POINTS, b"eM0007\n"), (b"\nZ\n", b"Z\n*\n\n")]) as port:
        start = time.monotonic()
        with pytest.raises(TransportTimeout):
            driver(port).eis(SPEC_3)
        elapsed = time.monotonic() - start
    assert ps.eis_point_budget_s(1000) - 0.1 < elapsed < ps.eis_point_budget_s(1000) + 3.0


def test_measurement_is_retried_once_after_a_link_fault() -> None:
    """The driver aborts at once (safety), and the transport, marked dirty by the garbled
    line, syncs again before the retry: a redundant but harmless ``Z`` (record 0053)."""
    garbled = b"eM0007\nPdc80F42\xff0m\n"
    exchange = [(EIS_3_POINTS, garbled), SYNC_IDLE, SYNC_IDLE, (EIS_3_POINTS, EIS_3_REPLY)]
    with expected_exchange(exchange) as port:
        spectrum = driver(port, measurement_retries=1).eis(SPEC_3)
    assert spectrum.complete and spectrum.n_points == 3


def test_ocv_read() -> None:
    script = ps.ocv_script(interval_s=0.5, duration_s=1.0).encode()
    assert script.startswith(b"e\nvar p\n") and b"meas_loop_ocp p 500m 1\n" in script
    reply = b"eM000B\nPab8325C40u,10\nPab8325C42u,10\n*\n\n"
    with expected_exchange([(script, reply)]) as port:
        value = driver(port).ocv(interval_s=0.5, duration_s=1.0)
    assert value == pytest.approx((3.300416 + 3.300418) / 2)


def test_abort_when_idle_and_when_running() -> None:
    with expected_exchange([SYNC_IDLE]) as port:
        driver(port).abort()
    with expected_exchange([(b"\nZ\n", b"Z\n*\n\n")]) as port:
        driver(port).abort()
