"""Sequence models that forecast a cell's whole capacity trajectory from early cycles.

Capacity is normalised by the nominal capacity and averaged over blocks of
``stride`` cycles: block k covers cycles (k·stride, (k+1)·stride]. The first
``early_cycle / stride`` blocks are the encoder's input; the model forecasts the
rest. Lifetime = first cycle where the forecast falls below 80 % of nominal
(interpolated between block centres).

* :class:`CapacityForecaster` — GRU/LSTM encoder–decoder. The encoder reads the
  early blocks (unidirectional = causal, for online use; ``bidirectional=True``
  for offline analysis of a fully observed early window) and, with a static
  context (standardised early-life features), initialises the decoder. The
  decoder predicts each block's capacity from the previous one: the measured one
  during training (teacher forcing), its own forecast at inference.
* :class:`HybridForecaster` — physics-informed: capacity =
  q_ref − D_t + r_t, where D_t = Σ softplus(·) is a monotone non-decreasing
  degradation accumulator (irreversible loss) and r_t = ρ·tanh(·) a bounded
  reversible part from a GRU branch (rest/temperature recovery).

Training loss (:func:`sequence_loss`): masked mean squared error — steps past a
cell's last observed block carry no loss — plus a scale-invariant softplus
penalty on predicted increases, mean softplus(β·Δq/q)/β over valid steps
(relative change, so the penalty does not depend on the capacity's units).
Long trajectories are trained by truncated back-propagation through time:
the decoder runs in chunks of ``tbptt`` steps, the recurrent state (and the
hybrid's accumulator) carried across chunks detached, one optimiser step per chunk.
Tensor shapes: B cells, Te encoder steps, Td decoder steps, S static features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - torch convention

from voltloop.surrogates.lifetime.dataset import EOL_FRACTION, CellHistory, LifetimeDataError


@dataclass
class SequenceConfig:
    early_cycle: int = 100
    stride: int = 5
    max_cycle: int = 3000  # forecast horizon
    hidden: int = 32
    cell: str = "gru"  # "gru" | "lstm"
    bidirectional: bool = False
    hybrid: bool = False
    reversible_scale: float = 0.02  # ρ, bound of the hybrid's reversible part
    epochs: int = 150
    lr: float = 5e-3
    tbptt: int = 100  # decoder steps per truncated-BPTT chunk
    monotone_weight: float = 1.0
    monotone_sharpness: float = 2000.0  # β
    teacher_noise: float = 0.002  # noise on teacher-forced inputs (exposure bias)
    sampling_probability: float = 0.5  # scheduled sampling, second half of training
    seed: int = 0

    def __post_init__(self) -> None:
        if self.early_cycle % self.stride:
            raise LifetimeDataError(
                f"early_cycle {self.early_cycle} must be a multiple of stride {self.stride}"
            )
        if self.cell not in ("gru", "lstm"):
            raise LifetimeDataError(f"cell {self.cell!r} must be 'gru' or 'lstm'")

    @property
    def encoder_steps(self) -> int:
        return self.early_cycle // self.stride

    @property
    def horizon_steps(self) -> int:
        return max(1, (self.max_cycle - self.early_cycle) // self.stride)


def block_means(cell: CellHistory, stride: int, n_blocks: int | None = None) -> np.ndarray:
    """Normalised capacity per block (k,), empty blocks filled by linear interpolation."""
    q = cell.summary["discharge_capacity_Ah"] / cell.nominal_capacity_Ah
    ok = np.isfinite(q) & (cell.cycle_index >= 1)
    blocks = (cell.cycle_index[ok] - 1) // stride
    if blocks.size == 0:
        raise LifetimeDataError(f"cell {cell.cell_id}: no finite discharge capacity")
    count = int(blocks.max()) + 1 if n_blocks is None else n_blocks
    keep = blocks < count
    sums = np.bincount(blocks[keep], weights=q[ok][keep], minlength=count)
    hits = np.bincount(blocks[keep], minlength=count)
    have = hits > 0
    if have.sum() < max(2, count // 2):
        raise LifetimeDataError(
            f"cell {cell.cell_id}: {int(have.sum())} of {count} blocks of {stride} cycles "
            "have a finite capacity; at least half are needed"
        )
    k = np.arange(count)
    return np.interp(k, k[have], sums[have] / np.maximum(hits[have], 1))


@dataclass
class SequenceBatch:
    early: torch.Tensor  # (B, Te)
    target: torch.Tensor  # (B, Td), padded with zeros
    lengths: torch.Tensor  # (B,) valid decoder steps
    static: torch.Tensor  # (B, S)


def make_batch(
    cells: Sequence[CellHistory],
    config: SequenceConfig,
    static: np.ndarray | None,
    with_target: bool = True,
) -> SequenceBatch:
    te = config.encoder_steps
    early, targets = [], []
    for cell in cells:
        if cell.last_cycle < config.early_cycle:
            raise LifetimeDataError(
                f"cell {cell.cell_id}: the sequence model needs {config.early_cycle} cycles, "
                f"only {cell.last_cycle} are stored"
            )
        blocks = block_means(cell, config.stride)
        early.append(blocks[:te])
        targets.append(blocks[te : te + config.horizon_steps] if with_target else blocks[:0])
    td = max(1, max(len(t) for t in targets))
    target = np.zeros((len(cells), td))
    for i, t in enumerate(targets):
        target[i, : len(t)] = t
    s = np.zeros((len(cells), 0)) if static is None else np.asarray(static, float)
    return SequenceBatch(
        early=torch.tensor(np.asarray(early), dtype=torch.float32),
        target=torch.tensor(target, dtype=torch.float32),
        lengths=torch.tensor([len(t) for t in targets]),
        static=torch.tensor(s, dtype=torch.float32),
    )


def step_mask(lengths: torch.Tensor, steps: int, offset: int = 0) -> torch.Tensor:
    """(B, steps) True where decoder step ``offset + j`` is inside the cell's data."""
    return (torch.arange(offset, offset + steps)[None, :] < lengths[:, None]).float()


def monotone_penalty(
    pred: torch.Tensor, prev: torch.Tensor, mask: torch.Tensor, sharpness: float
) -> torch.Tensor:
    """Scale-invariant softplus penalty on increases: mean softplus(β·Δ/q)/β over mask.

    pred (B, T) forecasts, prev (B, T) the value each one follows, mask (B, T)."""
    rel = (pred - prev) / prev.abs().clamp_min(1e-6)
    pen = F.softplus(sharpness * rel) / sharpness
    return (pen * mask).sum() / mask.sum().clamp_min(1.0)


def sequence_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    prev: torch.Tensor,
    mask: torch.Tensor,
    config: SequenceConfig,
) -> torch.Tensor:
    """Masked MSE + monotone penalty; padded steps (mask 0) contribute nothing."""
    mse = (((pred - target) ** 2) * mask).sum() / mask.sum().clamp_min(1.0)
    if config.monotone_weight == 0:
        return mse
    return mse + config.monotone_weight * monotone_penalty(
        pred, prev, mask, config.monotone_sharpness
    )


class CapacityForecaster(nn.Module):
    """Encoder–decoder; inputs early (B, Te), static (B, S); outputs capacity (B, Td)."""

    def __init__(self, config: SequenceConfig, n_static: int) -> None:
        super().__init__()
        self.config = config
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        h = config.hidden
        self.encoder = rnn(1, h, batch_first=True, bidirectional=config.bidirectional)
        enc_out = h * (2 if config.bidirectional else 1)
        self.context = nn.Linear(enc_out + n_static + 1, h)
        self.decoder = rnn(2 + h, h, batch_first=True)
        self.head = self._head(h)

    def _head(self, h: int) -> nn.Module:
        return nn.Linear(h, 1)

    def encode(self, early: torch.Tensor, static: torch.Tensor):
        """Context (B, H) and the decoder's initial state."""
        out, _ = self.encoder(early[..., None] - 1.0)
        ctx = torch.tanh(self.context(torch.cat([out[:, -1], static, early[:, -1:] - 1.0], 1)))
        h0 = ctx[None].contiguous()
        state = (h0, torch.zeros_like(h0)) if self.config.cell == "lstm" else h0
        return ctx, state

    def initial_extra(self, early: torch.Tensor) -> torch.Tensor:
        return early[:, -1]

    def _inputs(self, prev: torch.Tensor, ctx: torch.Tensor, step0: int) -> torch.Tensor:
        """Decoder inputs (B, T, 2 + H): previous capacity − 1, elapsed fraction, context."""
        b, t = prev.shape
        pos = (step0 + torch.arange(t, dtype=prev.dtype)) / self.config.horizon_steps
        return torch.cat(
            [
                (prev - 1.0)[..., None],
                pos[None, :, None].expand(b, t, 1),
                ctx[:, None].expand(-1, t, -1),
            ],
            2,
        )

    def decode(
        self, prev: torch.Tensor, ctx: torch.Tensor, state, extra: torch.Tensor, step0: int = 0
    ):
        """prev (B, T) inputs for steps step0.. → predictions (B, T), state, extra."""
        out, state = self.decoder(self._inputs(prev, ctx, step0), state)
        return prev + 0.01 * self.head(out)[..., 0], state, extra

    def detach_state(self, state):
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    @torch.no_grad()
    def rollout(self, early: torch.Tensor, static: torch.Tensor, steps: int) -> torch.Tensor:
        """Autoregressive forecast (B, steps)."""
        ctx, state = self.encode(early, static)
        extra = self.initial_extra(early)
        prev = early[:, -1:]
        outs = []
        for k in range(steps):
            pred, state, extra = self.decode(prev, ctx, state, extra, k)
            outs.append(pred)
            prev = pred
        return torch.cat(outs, 1)


class HybridForecaster(CapacityForecaster):
    """q_t = q_ref − D_t + ρ·tanh(r_t); D_t = D_{t−1} + softplus(d_t) never decreases."""

    def _head(self, h: int) -> nn.Module:
        return nn.Linear(h, 2)

    def initial_extra(self, early: torch.Tensor) -> torch.Tensor:
        """Accumulator state: (q_ref (B,), D (B,))."""
        return torch.stack([early[:, -1], torch.zeros_like(early[:, -1])], 1)

    def decode(
        self, prev: torch.Tensor, ctx: torch.Tensor, state, extra: torch.Tensor, step0: int = 0
    ):
        out, state = self.decoder(self._inputs(prev, ctx, step0), state)
        raw = self.head(out)
        increments = 0.01 * F.softplus(raw[..., 0] - 2.0)  # ≥ 0 by construction
        damage = extra[:, 1:2] + torch.cumsum(increments, 1)  # (B, T), non-decreasing
        reversible = self.config.reversible_scale * torch.tanh(raw[..., 1])
        pred = extra[:, 0:1] - damage + reversible
        return pred, state, torch.stack([extra[:, 0], damage[:, -1]], 1)

    def damage(self, early: torch.Tensor, static: torch.Tensor, steps: int) -> torch.Tensor:
        """Rolled-out accumulator D (B, steps), for inspection and tests."""
        with torch.no_grad():
            ctx, state = self.encode(early, static)
            extra = self.initial_extra(early)
            prev, out = early[:, -1:], []
            for k in range(steps):
                prev, state, extra = self.decode(prev, ctx, state, extra, k)
                out.append(extra[:, 1:2])
            return torch.cat(out, 1)


def _make(config: SequenceConfig, n_static: int) -> CapacityForecaster:
    return (HybridForecaster if config.hybrid else CapacityForecaster)(config, n_static)


@contextlib.contextmanager
def single_thread():
    """Run torch single-threaded: these small recurrent nets are 3–4× faster so on a
    shared 2-core machine (thread hand-offs cost more than the tiny matmuls)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(model: CapacityForecaster, batch: SequenceBatch, config: SequenceConfig) -> list[float]:
    """Teacher-forced training with truncated BPTT; returns the loss per epoch."""
    with single_thread():
        return _train(model, batch, config)


def _train(model: CapacityForecaster, batch: SequenceBatch, config: SequenceConfig) -> list[float]:
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    td = batch.target.shape[1]
    prev_all = torch.cat([batch.early[:, -1:], batch.target[:, :-1]], 1)  # (B, Td)
    history = []
    for epoch in range(config.epochs):
        inputs = prev_all
        if config.sampling_probability and epoch >= config.epochs // 2:
            # scheduled sampling (Bengio et al. 2015): some inputs are the model's own
            # forecasts, so it learns to recover from its errors during a rollout
            own = model.rollout(batch.early, batch.static, td)
            own_prev = torch.cat([batch.early[:, -1:], own[:, :-1]], 1)
            p = config.sampling_probability * (2 * epoch / config.epochs - 1)
            pick = torch.rand(own_prev.shape, generator=gen) < p
            inputs = torch.where(pick, own_prev, prev_all)
        ctx_state = None
        extra = model.initial_extra(batch.early)
        total = 0.0
        for start in range(0, td, config.tbptt):
            stop = min(td, start + config.tbptt)
            mask = step_mask(batch.lengths, stop - start, start)
            if mask.sum() == 0:
                break
            ctx, state0 = model.encode(batch.early, batch.static)
            state = state0 if ctx_state is None else ctx_state
            prev = inputs[:, start:stop]
            if config.teacher_noise:
                prev = prev + config.teacher_noise * torch.randn(prev.shape, generator=gen)
            pred, state, extra = model.decode(prev, ctx, state, extra, start)
            loss = sequence_loss(
                pred, batch.target[:, start:stop], prev_all[:, start:stop], mask, config
            )
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ctx_state = model.detach_state(state)
            extra = extra.detach()
            total += float(loss.detach()) * float(mask.sum())
        history.append(total / float(batch.lengths.sum().clamp_min(1)))
    return history


def crossing_cycle(
    forecast: np.ndarray, config: SequenceConfig, threshold: float = EOL_FRACTION
) -> tuple[float, bool]:
    """First cycle below ``threshold`` in a normalised forecast (steps,); (cycle, censored)."""
    below = np.flatnonzero(forecast < threshold)

    def centre(k: int) -> float:  # cycle at the middle of forecast block k
        return config.early_cycle + k * config.stride + (config.stride + 1) / 2

    if below.size == 0:
        return float(config.max_cycle), True
    k = int(below[0])
    if k == 0:
        return centre(0), False
    a, b = forecast[k - 1], forecast[k]
    frac = (a - threshold) / (a - b) if a != b else 0.0
    return float(centre(k - 1) + frac * config.stride), False


class SequenceLifetimeModel:
    """Trains a forecaster on cells and predicts lifetimes from their early cycles."""

    def __init__(self, config: SequenceConfig | None = None) -> None:
        self.config = config or SequenceConfig()
        self.model: CapacityForecaster | None = None
        self.static_mean: np.ndarray | None = None
        self.static_scale: np.ndarray | None = None
        self.loss_history: list[float] = []

    def _static(self, static: np.ndarray | None, n: int) -> np.ndarray:
        if static is None:
            return np.zeros((n, 0))
        static = np.asarray(static, float)
        if not np.isfinite(static).all():
            raise LifetimeDataError("static features for the sequence model contain NaN/inf")
        return (static - self.static_mean) / self.static_scale

    def fit(self, cells: Sequence[CellHistory], static: np.ndarray | None = None):
        """cells: training cells observed well past the early window; static (n, S)."""
        if len(cells) < 2:
            raise LifetimeDataError(f"the sequence model needs at least 2 cells; got {len(cells)}")
        torch.manual_seed(self.config.seed)
        if static is not None:
            static = np.asarray(static, float)
            self.static_mean = static.mean(0)
            self.static_scale = np.where(static.std(0) > 0, static.std(0), 1.0)
        batch = make_batch(cells, self.config, self._static(static, len(cells)))
        if int(batch.lengths.max()) == 0:
            raise LifetimeDataError("no training cell has cycles past the early window")
        self.model = _make(self.config, batch.static.shape[1])
        self.loss_history = train(self.model, batch, self.config)
        return self

    def forecast(
        self, cells: Sequence[CellHistory], static: np.ndarray | None = None
    ) -> np.ndarray:
        """Normalised capacity forecasts (B, horizon_steps) after the early window."""
        if self.model is None:
            raise LifetimeDataError("the sequence model has not been fitted")
        early_only = [c.truncated(self.config.early_cycle) for c in cells]
        batch = make_batch(early_only, self.config, self._static(static, len(cells)), False)
        self.model.eval()
        with single_thread():
            return self.model.rollout(batch.early, batch.static, self.config.horizon_steps).numpy()

    def predict(self, cells: Sequence[CellHistory], static: np.ndarray | None = None):
        """Lifetimes (B,) and a censored flag (B,) (True: no crossing within the horizon)."""
        lives, censored = zip(
            *(crossing_cycle(f, self.config) for f in self.forecast(cells, static)), strict=True
        )
        return np.asarray(lives), np.asarray(censored)

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        from voltloop.surrogates.lifetime import artifacts

        arrays = {"state_dict": artifacts.torch_state_to_array(self.model.state_dict())}
        if self.static_mean is not None:
            arrays.update(static_mean=self.static_mean, static_scale=self.static_scale)
        n_static = 0 if self.static_mean is None else int(self.static_mean.size)
        return arrays, {
            "config": asdict(self.config),
            "n_static": n_static,
            "final_loss": self.loss_history[-1] if self.loss_history else None,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> SequenceLifetimeModel:
        from voltloop.surrogates.lifetime import artifacts

        obj = cls(SequenceConfig(**meta["config"]))
        obj.model = _make(obj.config, int(meta["n_static"]))
        obj.model.load_state_dict(artifacts.torch_state_from_array(arrays["state_dict"]))
        if "static_mean" in arrays:
            obj.static_mean, obj.static_scale = arrays["static_mean"], arrays["static_scale"]
        return obj
