"""Testing helpers for users' own campaign tests, as the library tests itself.

In-memory stand-ins for the campaign engine's interfaces — a cycler whose cells fade
linearly to a known life, a proposer over the Attia pool, a predictor that
extrapolates the stored fade, an operator that loads every cell — so the engine's
bookkeeping (rounds, leases, idempotent dispatch, ingest, early prediction, end of
life, resume) can be exercised on a real database in about a second, without sockets.
The same engine runs against the simulated lab over real byte streams in dry runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from voltloop.campaigns.attia import enumerate_protocols
from voltloop.drivers.interfaces import (
    ChannelState,
    CyclerChannelStatus,
    RecordBatch,
    StartOutcome,
)
from voltloop.drivers.records import empty_records
from voltloop.orchestrator.ports import (
    HealthAction,
    HealthVerdict,
    LifetimeEstimate,
    LoadOutcome,
    Proposal,
    ProposalBatch,
)

SAMPLES_PER_CYCLE = 6


def fake_life(parameters: dict[str, float]) -> float:
    """A known objective: life falls with the first-step rate, peaks mid-space."""
    return 1500.0 - 60.0 * (parameters["CC1"] - 5.0) ** 2 - 40.0 * parameters["CC2"]


@dataclass
class FakeChannel:
    state: ChannelState = ChannelState.IDLE
    experiment_id: str | None = None
    records: np.ndarray = field(default_factory=empty_records)
    cycles_to_run: int = 0
    life: float = 1000.0
    starts: int = 0
    peak_C: float = 35.0  # the cell's temperature peak each cycle
    limit_C: float | None = None  # the on-instrument temperature limit
    reason: str | None = None


class FakeCycler:
    """Produces ``cycles_per_poll`` cycles of records each time a channel's status is
    read; capacity fades linearly to 80 % at the experiment's ``life``. The protocol
    dict gives ``max_cycles``, ``life`` and optionally the cell's peak temperature
    ``peak_C``; a cell hotter than the ``max_temperature_C`` of ``start`` trips the
    channel to ``safety_stopped`` at its first sample over the limit."""

    def __init__(
        self,
        url: str,
        channels: int,
        *,
        cycles_per_poll: int = 7,
        nominal_Ah: float = 1.1,
        eis_every: int | None = None,
        speeds: list[int] | None = None,
    ):
        self.url = url
        self.channels = [FakeChannel() for _ in range(channels)]
        self.cycles_per_poll = cycles_per_poll
        self.nominal_Ah = nominal_Ah
        #: with ``eis_every``, a channel waits (WAITING_EIS) after every that many cycles
        #: until ``resume``, like a protocol's EIS checkpoint
        self.eis_every = eis_every
        #: cycles per status read for each channel (cells that age at different paces)
        self.speeds = speeds
        #: status reads of a channel after its experiment ended, by experiment id
        self.reads_after_end: dict[str, int] = {}

    def start(self, channel, protocol, experiment_id, *, max_temperature_C=None):
        ch = self.channels[channel]
        experiment_id = str(experiment_id)
        if ch.experiment_id == experiment_id and ch.state.is_active:
            return StartOutcome.ALREADY_RUNNING
        if ch.state.is_active:
            from voltloop.drivers.errors import InstrumentError

            raise InstrumentError(-221, "Settings conflict; channel busy", command="START")
        ch.state, ch.experiment_id = ChannelState.RUNNING, experiment_id
        ch.records = empty_records()
        ch.cycles_to_run = int(protocol["max_cycles"])
        ch.life = float(protocol["life"])
        ch.peak_C = float(protocol.get("peak_C", 35.0))
        ch.limit_C, ch.reason = max_temperature_C, None
        ch.starts += 1
        return StartOutcome.STARTED

    def _advance(self, ch: FakeChannel) -> None:
        if ch.state != ChannelState.RUNNING:  # waiting at a checkpoint, or ended
            return
        done = 0 if len(ch.records) == 0 else int(ch.records["cycle"][-1]) + 1
        per_poll = self.cycles_per_poll
        if self.speeds is not None:
            per_poll = self.speeds[self.channels.index(ch)]
        n = min(per_poll, ch.cycles_to_run - done)
        if self.eis_every:
            n = min(n, self.eis_every - done % self.eis_every)
        rows = empty_records(n * SAMPLES_PER_CYCLE)
        for k in range(n):
            cycle = done + k
            q = self.nominal_Ah * (1.0 - 0.2 * cycle / ch.life)
            sl = slice(k * SAMPLES_PER_CYCLE, (k + 1) * SAMPLES_PER_CYCLE)
            rows["cycle"][sl] = cycle
            rows["t_s"][sl] = cycle * 3600.0 + np.arange(SAMPLES_PER_CYCLE) * 600.0
            rows["current_A"][sl] = [4.4, 4.4, 1.1, -4.4, -4.4, 0.0]
            rows["voltage_V"][sl] = [3.3, 3.4, 3.6, 3.2, 3.0, 2.0]
            rows["temperature_C"][sl] = np.array([31, 35, 33, 34, 32, 30]) * ch.peak_C / 35.0
            rows["charge_Ah"][sl] = [0.0, q / 2, q, q, q, q]
            rows["discharge_Ah"][sl] = [0.0, 0.0, 0.0, q / 2, q, q]
        rows["record"] = len(ch.records) + np.arange(len(rows))
        if ch.limit_C is not None and ch.peak_C > ch.limit_C and len(rows):
            # the instrument trips at the first sample over its limit, mid-cycle
            trip = int(np.argmax(rows["temperature_C"] > ch.limit_C))
            ch.records = np.concatenate([ch.records, rows[: trip + 1]])
            ch.state = ChannelState.SAFETY_STOPPED
            ch.reason = (
                f"over-temperature: {rows['temperature_C'][trip]:.1f} °C > {ch.limit_C:.1f} °C"
            )
            return
        ch.records = np.concatenate([ch.records, rows])
        if done + n >= ch.cycles_to_run:
            ch.state = ChannelState.COMPLETED
        elif self.eis_every and (done + n) % self.eis_every == 0:
            ch.state = ChannelState.WAITING_EIS

    def status(self, channel):
        ch = self.channels[channel]
        if ch.experiment_id and not ch.state.is_active:  # the host looks again after the end
            self.reads_after_end[ch.experiment_id] = (
                self.reads_after_end.get(ch.experiment_id, 0) + 1
            )
        self._advance(ch)
        return CyclerChannelStatus(
            channel=channel,
            state=ch.state,
            experiment_id=uuid.UUID(ch.experiment_id) if ch.experiment_id else None,
            record_count=len(ch.records),
            cycle=int(ch.records["cycle"][-1]) if len(ch.records) else 0,
            reason=ch.reason,
        )

    def fetch(self, channel, since, *, experiment_id=None, limit=None):
        ch = self.channels[channel]
        end = len(ch.records) if limit is None else min(len(ch.records), since + limit)
        return RecordBatch(
            channel, uuid.UUID(ch.experiment_id), since, ch.records[since:end].copy()
        )

    def stop(self, channel):
        ch = self.channels[channel]
        if ch.state.is_active:
            ch.state = ChannelState.STOPPED

    def resume(self, channel):
        ch = self.channels[channel]
        if ch.state == ChannelState.WAITING_EIS:
            ch.state = ChannelState.RUNNING

    def reset(self):
        pass

    def close(self):
        pass


class AttiaPoolProposer:
    """Takes untested protocols of the 224 in a seeded random order."""

    def __init__(self):
        self.pool = [dict(CC1=p.CC1, CC2=p.CC2, CC3=p.CC3) for p in enumerate_protocols()]
        self.calls: list[dict[str, int]] = []  # q, pending and observed of each call

    def propose(self, *, observations, pending, tested, q, seed):
        self.calls.append({"q": q, "pending": len(pending), "observed": len(observations)})
        seen = {tuple(sorted(t.items())) for t in tested}
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self.pool))
        picks = [self.pool[i] for i in order if tuple(sorted(self.pool[i].items())) not in seen]
        return ProposalBatch([Proposal(p) for p in picks[:q]], reason="random")

    def confirmation_choice(self, observations, k):
        """The ``k`` protocols with the best observed objective."""
        best_first = sorted(observations, key=lambda o: o.objective, reverse=True)
        chosen: dict[tuple, Proposal] = {}
        for o in best_first:
            key = tuple(sorted(o.parameters.items()))
            if key not in chosen and len(chosen) < k:
                chosen[key] = Proposal(dict(o.parameters), predicted_mean=o.objective)
        return list(chosen.values())


class StoredLifePredictor:
    """Predicts from the stored cycles: extrapolates the capacity fade line."""

    version_id: int

    @classmethod
    def registered(cls, db) -> StoredLifePredictor:
        """A predictor whose ``fade-line`` model version row exists in ``db``."""
        from voltloop.db.models import ModelVersion

        predictor = cls()
        with db.begin() as connection:
            predictor.version_id = connection.execute(
                ModelVersion.__table__.insert().values(
                    kind="lifetime", name="fade-line", version=1, training_set_hash="none",
                    hyperparameters={}, metrics={},
                )
            ).inserted_primary_key[0]  # fmt: skip
        return predictor

    def predict(self, session, experiment_id, cycles_seen):
        from voltloop.db.ingest import store_prediction
        from voltloop.db.readback import cycle_summaries

        table = cycle_summaries(session, experiment_id)
        q = np.asarray(table["discharge_capacity_ah"])[:cycles_seen]
        slope = np.polyfit(np.arange(len(q)), q, 1)[0]
        life = 0.2 * q[0] / max(-slope, 1e-9)
        store_prediction(session, experiment_id, self.version_id, cycles_seen, float(life), 50.0)
        return LifetimeEstimate(cycles_seen, float(life), 50.0, model_version_id=self.version_id)

    def prepare(self, session, campaign_id):
        return "fade-line extrapolation needs no training"


class AutoOperator:
    def __init__(self, refuse: set[int] = frozenset()):
        self.loaded: list[str] = []
        self.refuse = refuse
        self.calls = 0

    def load(self, slots):
        outcomes = {}
        for slot in slots:
            self.calls += 1
            if self.calls in self.refuse:
                outcomes[slot.experiment_id] = LoadOutcome.DAMAGED
            else:
                self.loaded.append(slot.cell_id)
                outcomes[slot.experiment_id] = LoadOutcome.LOADED
        return outcomes

    def attach_potentiostat(self, cycler_url, channel):
        pass


@dataclass(frozen=True)
class FakeSpectrum:
    """What ``Potentiostat.eis`` returns, as far as the engine reads it."""

    frequencies: np.ndarray
    impedance: np.ndarray
    linkk: None = None
    fit: None = None


class FakePotentiostat:
    """Measures a Randles-like spectrum (R0 20 mΩ, 30 mΩ arc) in no time."""

    def __init__(self) -> None:
        self.sweeps = 0

    def eis(self, spec):
        self.sweeps += 1
        f = np.logspace(4, -1, 26)
        w = 2 * np.pi * f
        z = 0.02 + 0.03 / (1 + 1j * w * 0.03 * 1.0)
        return FakeSpectrum(f, z)

    def close(self) -> None:
        pass


class ScriptedHealthMonitor:
    """Gives the verdicts it is told to, by the order in which cells are first assessed
    (1-based): ``{2: HealthAction.STOP}`` stops the second cell it sees."""

    def __init__(self, verdicts: dict[int, HealthAction], model_version_id: int = 0):
        self.verdicts = verdicts
        self.model_version_id = model_version_id
        self.seen: list[str] = []

    def prepare(self, session, campaign_id):
        return "scripted verdicts"

    def assess(self, session, experiment_id):
        if experiment_id not in self.seen:
            self.seen.append(experiment_id)
        action = self.verdicts.get(self.seen.index(experiment_id) + 1, HealthAction.CONTINUE)
        return HealthVerdict(action, 1.0 if action == HealthAction.STOP else -1.0, 0.1,
                             self.model_version_id)  # fmt: skip
