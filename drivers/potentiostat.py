"""PalmSens EmStat (MethodSCRIPT) potentiostat driver over :mod:`voltloop.drivers.transport`.

Implements :class:`voltloop.drivers.interfaces.Potentiostat`: ``identify`` (``t``),
``eis(spec)`` → :class:`~voltloop.drivers.eis.EisSpectrum`, ``ocv()``,
``chronopotentiometry(...)``, ``abort`` (``Z``) and ``close``. The wire protocol is
docs/protocols/methodscript.md; scripts and the output parser come from
:mod:`voltloop.drivers.methodscript`.

Bounded time (docs §Timeouts, decision record 0053): short commands use the transport's
``timeout_s``; a script's output is read line by line, each line with its own budget
— for the EIS package at frequency f, ``3 × (4/f + 0.5 s)`` — and the whole sweep with
the sum of those budgets. A timeout therefore fires within ~1.5 s on a silent link at
10 kHz but not on a healthy 10 mHz point, and no read ever blocks longer than the sweep
budget.

Recovery: after a timeout, garbled or partial output, or a lost link, the driver (or the
transport, before its next command) runs PalmSens' abort-and-sync: ``\\n`` (flushes a
half-sent command), ``Z``, then reads until ``Z!0006`` (nothing running) or ``Z`` and the
end-of-script line. Measurements are retried ``measurement_retries`` times after such
link faults (re-measuring only perturbs the cell again); an ``!XXXX`` error from the
device is an :class:`InstrumentError` and is never retried.
"""

# ruff: noqa: N815 - unit-suffixed physics names

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from voltloop.drivers import methodscript as ms
from voltloop.drivers import potentiostat_scripts as ps
from voltloop.drivers.eis import EisSpec, EisSpectrum
from voltloop.drivers.errors import Disconnected, ProtocolError, TransportTimeout
from voltloop.drivers.interfaces import InstrumentIdentity, InstrumentKind
from voltloop.drivers.transport import Transcript, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Firmware id prefix (docs §t) → (device model name, limits key or None)
DEVICE_IDS: tuple[tuple[str, str, ms.DeviceModel | None], ...] = (
    ("espico", "EmStat Pico", ms.DeviceModel.EMSTAT_PICO),
    ("es4_hr", "EmStat4 HR", ms.DeviceModel.EMSTAT4_HR),
    ("es4_lr", "EmStat4 LR", ms.DeviceModel.EMSTAT4_LR),
    ("mes4hr", "MultiEmStat4 HR", ms.DeviceModel.EMSTAT4_HR),
    ("mes4lr", "MultiEmStat4 LR", ms.DeviceModel.EMSTAT4_LR),
    ("nexus1", "Nexus", None),
)
_LINK_FAULTS = (TransportTimeout, ProtocolError, Disconnected)


class PotentialTrace(BaseModel):
    """An OCV or chronopotentiometry record: arrays of equal length n."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_s: list[float]
    current_A: list[float]
    potential_V: list[float]
    status: list[int]
    complete: bool = True


#: With a measurement time scale below 1, a script's whole output may take this many
#: line timeouts (a 61-point sweep streams in far fewer).
_SCALED_TOTAL_LINES = 30


class PalmSensPotentiostat:
    """MethodSCRIPT driver; see the module docstring.

    ``device`` fixes the device model (limits used to validate scripts); None = learn it
    from ``identify`` on first use. ``transport`` replaces the pyserial transport (tests
    pass one over an expected-exchange port); its ``resync`` hook is set to this driver's
    abort-and-sync unless it already has one.
    """

    def __init__(
        self,
        url: str,
        *,
        device: ms.DeviceModel | None = None,
        timeout_s: float = 2.0,
        retries: int = 2,
        measurement_retries: int = 1,
        baudrate: int = 921600,
        transcript: Transcript | None = None,
        transport: Transport | None = None,
        analyse: bool = True,
        measurement_time_scale: float = 1.0,
    ) -> None:
        if not 0.0 <= measurement_time_scale <= 1.0:
            raise ValueError(
                f"measurement_time_scale = {measurement_time_scale}: must be within 0..1"
            )
        self.url = url
        #: wall seconds per second of measurement: 1 for an instrument that measures in
        #: real time; a simulated one that streams a sweep at once is 0. Reading a
        #: script's output waits the measurement's own time budgets scaled by this,
        #: never less than ``timeout_s`` per line — so a lost line of a 10 mHz point
        #: costs ``timeout_s``, not the minutes a real instrument may take for it.
        self.measurement_time_scale = measurement_time_scale
        self.device = device
        self.retries = retries
        self.measurement_retries = measurement_retries
        self.analyse = analyse
        if transport is None:
            transport = Transport(
                url,
                timeout_s=timeout_s,
                terminator=b"\n",
                baudrate=baudrate,
                retries=retries,
                transcript=transcript,
                resync=self._resync,
            )
        elif transport.resync is None:
            transport.resync = self._resync
        self.transport = transport
        self.firmware: str | None = None
        self._lock = threading.RLock()
        self._measuring = threading.Event()
        self._abort_requested = threading.Event()

    # ------------------------------------------------------------------ basics
    @property
    def timeout_s(self) -> float:
        return self.transport.timeout_s

    @property
    def limits(self) -> ms.DeviceLimits:
        """The device's limits; an unrecognised device is validated as an EmStat4 HR."""
        if self.device is None and self.firmware is None:
            self.identify()
        return ms.DEVICE_LIMITS[self.device or ms.DeviceModel.EMSTAT4_HR]

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> PalmSensPotentiostat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retrying(self, op: Callable[[], T], attempts: int) -> T:
        """Run ``op``; after a link fault recover and try again, ``attempts`` times in all."""
        for attempt in range(attempts):
            try:
                return op()
            except _LINK_FAULTS as exc:
                log.info("%s: %s (attempt %d of %d)", self.url, exc, attempt + 1, attempts)
                if attempt == attempts - 1:
                    self._recover_quietly()
                    raise
                self._recover_quietly()
        raise AssertionError("unreachable")

    def _recover_quietly(self) -> None:
        """Abort-and-sync now; a failure is left for the next command's resync."""
        try:
            with self._lock:
                if not self.transport.is_open:
                    self.transport.reconnect()
                self.transport.drain(self.transport.quiet_s)
                self._resync(self.transport)
        except _LINK_FAULTS as exc:
            log.info("%s: recovery failed (%s); will resync before the next command", self.url, exc)

    def _resync(self, transport: Transport) -> None:
        """PalmSens' abort-and-sync: ``\\n`` + ``Z``, then read to a known idle state."""
        transport.write(b"\nZ\n")
        deadline = time.monotonic() + transport.timeout_s
        while True:
            line = transport.read_line(max(0.0, deadline - time.monotonic()))
            if line.startswith("Z"):
                break
        if line == "Z":  # a script was running: it ends with the empty line
            deadline = time.monotonic() + max(10 * transport.timeout_s, 10.0)
            while transport.read_line(max(0.0, deadline - time.monotonic())) != "":
                pass

    # ------------------------------------------------------------------ identify
    def identify(self) -> InstrumentIdentity:
        """``t`` → firmware version lines (first starts with ``t``, last ends with ``*``)."""
        return self._retrying(self._identify_once, 1 + self.retries)

    def _identify_once(self) -> InstrumentIdentity:
        with self._lock:
            self.transport.command("t")
            lines = [self.transport.read_line()]
            while not lines[-1].endswith("*"):
                if len(lines) >= 4:
                    raise ProtocolError(f"firmware reply without '*' after {lines!r}", url=self.url)
                lines.append(self.transport.read_line())
        if not lines[0].startswith("t"):
            raise ProtocolError(
                f"firmware reply {lines[0]!r} does not start with 't'", url=self.url
            )
        firmware = " ".join(lines)[1:-1].strip()
        model = "unknown MethodSCRIPT device"
        for prefix, name, key in DEVICE_IDS:
            if firmware.startswith(prefix):
                model = name
                if self.device is None and key is not None:
                    self.device = key
                break
        self.firmware = firmware
        return InstrumentIdentity(
            kind=InstrumentKind.POTENTIOSTAT,
            maker="PalmSens",
            model=model,
            serial="",
            firmware=firmware,
            url=self.url,
        )

    # ------------------------------------------------------------------ abort
    def abort(self) -> None:
        """``Z``: abort the running script. From another thread during ``eis``/``ocv`` the
        measurement returns what it has (``complete=False``); when idle it syncs."""
        if self._measuring.is_set():
            self._abort_requested.set()
            self.transport.write(b"Z\n")
            return
        with self._lock:
            self.transport.drain()
            self._resync(self.transport)

    # ------------------------------------------------------------------ scripts
    def _run_script(
        self,
        script: str,
        line_budget_s: Callable[[list[ms.DataPackage]], float],
        total_budget_s: float,
    ) -> tuple[list[ms.DataPackage], bool]:
        """Send ``script``; read its output to the end line. ``line_budget_s(packages)`` is
        how long to wait for the next line given the packages so far. Returns
        (packages, aborted)."""
        with self._lock:
            self._abort_requested.clear()
            self.transport.command(script[:-1])  # the transport adds the final "\n"
            self._measuring.set()
            try:
                return self._read_output(line_budget_s, total_budget_s)
            finally:
                self._measuring.clear()

    def _read_output(
        self, line_budget_s: Callable[[list[ms.DataPackage]], float], total_budget_s: float
    ) -> tuple[list[ms.DataPackage], bool]:
        parser = ms.OutputParser()
        packages: list[ms.DataPackage] = []
        error: ms.ErrorReply | None = None
        aborted = False
        scale = self.measurement_time_scale
        if scale < 1.0:
            total_budget_s = max(total_budget_s * scale, _SCALED_TOTAL_LINES * self.timeout_s)
        deadline = time.monotonic() + total_budget_s
        while not parser.finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportTimeout(
                    f"script output not finished within its budget of {total_budget_s:.0f} s",
                    url=self.url,
                )
            budget = self.timeout_s if error or aborted else line_budget_s(packages)
            if scale < 1.0:
                budget = max(self.timeout_s, budget * scale)
            line = self.transport.read_line(min(budget, remaining))
            try:
                events = parser.feed_line(line.encode("ascii"))
            except ProtocolError as exc:
                raise ProtocolError(str(exc), url=self.url) from None
            for event in events:
                if isinstance(event, ms.DataPackage):
                    packages.append(event)
                elif isinstance(event, ms.ErrorReply):
                    error = error or event
                elif isinstance(event, ms.AbortAcknowledged):
                    aborted = True
        if error is not None:
            raise error.to_exception(url=self.url)
        return packages, aborted or self._abort_requested.is_set()

    # ------------------------------------------------------------------ EIS
    def eis(self, spec: EisSpec) -> EisSpectrum:
        """Run the EIS sweep of ``spec`` and return the spectrum (analysed with Lin-KK, and
        fitted if ``spec.fit_circuit``, unless ``analyse=False``).

        Raises ScriptValidationError (exit code 2) before any I/O if the spec is outside
        the device's limits; InstrumentError for a device error; TransportTimeout,
        ProtocolError or Disconnected if link faults persist through the retries.
        """
        limits = self.limits
        n = spec.n_points
        script = ps.eis_script(
            limits,
            f_start_Hz=spec.f_start_Hz,
            f_end_Hz=spec.f_end_Hz,
            n_points=n,
            amplitude_Vrms=spec.amplitude_Vrms,
            dc_potential_V=spec.dc_potential_V,
        )
        frequencies = ps.eis_frequencies(spec.f_start_Hz, spec.f_end_Hz, n)
        at_ocv = spec.dc_potential_V is None
        first_extra = ps.EIS_TIMEOUT_SAFETY * ps.OCV_REST_S if at_ocv else 0.0

        def line_budget(packages: list[ms.DataPackage]) -> float:
            k = sum(1 for package in packages if package.get("dc") is not None)
            if k >= n:
                return self.timeout_s
            return ps.eis_point_budget_s(frequencies[k]) + (first_extra if k == 0 else 0.0)

        total = ps.eis_sweep_budget_s(frequencies, at_ocv=at_ocv)

        def measure() -> EisSpectrum:
            packages, aborted = self._run_script(script, line_budget, total)
            return self._spectrum(spec, frequencies, packages, aborted)

        spectrum = self._retrying(measure, 1 + self.measurement_retries)
        if self.analyse and spectrum.complete:  # an aborted sweep is returned as measured
            try:
                spectrum = spectrum.analysed()
            except ValueError as exc:  # too few valid points, fit failure
                log.warning("%s: EIS analysis skipped: %s", self.url, exc)
        return spectrum

    def _spectrum(
        self,
        spec: EisSpec,
        frequencies: np.ndarray,
        packages: list[ms.DataPackage],
        aborted: bool,
    ) -> EisSpectrum:
        f_out, zr, zi, status, ranges = [], [], [], [], []
        ocv = [p.get("ab").value for p in packages if p.get("dc") is None and p.get("ab")]
        packages = [p for p in packages if p.get("dc") is not None or p.get("ab") is None]
        for k, package in enumerate(packages):
            f, re_, im_ = (package.get(c) for c in ("dc", "cc", "cd"))
            if f is None or re_ is None or im_ is None:
                raise ProtocolError(
                    f"EIS package {package.encode()!r} lacks dc/cc/cd", url=self.url
                )
            if k >= len(frequencies) or not math.isclose(f.value, frequencies[k], rel_tol=1e-4):
                raise ProtocolError(
                    f"EIS point {k} at {f.value:g} Hz; the sweep expects "
                    f"{frequencies[k] if k < len(frequencies) else 'no more points'}",
                    url=self.url,
                )
            flags = int(re_.status or 0) | int(im_.status or 0) | int(f.status or 0)
            f_out.append(f.value)
            zr.append(re_.value)
            zi.append(im_.value)
            status.append(flags)
            ranges.append(re_.range_code)
        complete = not aborted and len(packages) == len(frequencies)
        if not complete and not aborted:
            raise ProtocolError(
                f"EIS output ended after {len(packages)} of {len(frequencies)} points",
                url=self.url,
            )
        return EisSpectrum(
            frequencies_Hz=f_out,
            z_real_ohm=zr,
            z_imag_ohm=zi,
            status=status,
            current_range=ranges,
            spec=spec,
            dc_potential_V=ocv[-1] if spec.dc_potential_V is None and ocv else spec.dc_potential_V,
            instrument=self.firmware,
            complete=complete,
        )

    # ------------------------------------------------------------------ OCV / CP
    def ocv(self, *, interval_s: float = 0.1, duration_s: float = 1.0) -> float:
        """Mean open-circuit potential over ``duration_s`` (``meas_loop_ocp``), V."""
        trace = self._potential_trace(ps.ocv_script(interval_s=interval_s, duration_s=duration_s),
                                      interval_s, duration_s)  # fmt: skip
        values = np.asarray(trace.potential_V, dtype=float)
        if values.size == 0 or not np.isfinite(values).any():
            raise ProtocolError("OCV read returned no finite potential", url=self.url)
        return float(np.nanmean(values))

    def chronopotentiometry(
        self, current_A: float, *, interval_s: float = 0.1, duration_s: float = 2.0
    ) -> PotentialTrace:
        """Apply ``current_A`` for ``duration_s`` and record the potential (``meas_loop_cp``)."""
        script = ps.chronopotentiometry_script(
            self.limits, current_A=current_A, interval_s=interval_s, duration_s=duration_s
        )
        return self._potential_trace(script, interval_s, duration_s)

    def _potential_trace(self, script: str, interval_s: float, duration_s: float) -> PotentialTrace:
        per_line = ps.EIS_TIMEOUT_SAFETY * interval_s + self.timeout_s
        total = ps.EIS_TIMEOUT_SAFETY * duration_s + 10.0

        def measure() -> PotentialTrace:
            packages, aborted = self._run_script(script, lambda _packages: per_line, total)
            t, i, e, s = [], [], [], []
            for k, package in enumerate(packages):
                potential = package.get("ab")
                if potential is None:
                    raise ProtocolError(f"package {package.encode()!r} lacks 'ab'", url=self.url)
                time_var, current = package.get("eb"), package.get("db")
                t.append(time_var.value if time_var else (k + 1) * interval_s)
                i.append(current.value if current else 0.0)
                e.append(potential.value)
                s.append(int(potential.status or 0))
            return PotentialTrace(
                time_s=t, current_A=i, potential_V=e, status=s, complete=not aborted
            )

        return self._retrying(measure, 1 + self.measurement_retries)
