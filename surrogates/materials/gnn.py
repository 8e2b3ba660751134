"""CGCNN-style graph network, a calibrated deep ensemble of it, and its BoTorch face.

- :class:`CrystalGraphNet` — atomic-number embedding + element descriptors → ``hidden``
  features; ``layers`` × ``CGConv`` (Xie & Grossman 2018's gated convolution, in
  torch-geometric) with residual updates; mean pooling over sites; an MLP head → one
  property. :meth:`CrystalGraphNet.embed` returns the pooled ``hidden``-vector.
- :class:`GraphEnsemble` — ``members`` networks from different seeds (a deep ensemble,
  Lakshminarayanan et al. 2017) trained on standardised targets. Its predictive std is
  the members' spread times a scale fitted on a held-out calibration split so that
  central 90 % intervals cover 90 % there (variance recalibration; ensembles alone are
  over-confident on small data).
- :class:`PoolPosteriorModel` — a BoTorch ``Model`` over a candidate pool addressed by
  index (inputs ``b × q × 1`` holding pool indices): independent Gaussian posteriors with
  the ensemble's mean and calibrated variance, so the same acquisition code
  (``qLogEI``/``qLogNEI``, ``optimize_acqf_discrete``) ranks crystals.

Shapes: a batch of graphs is a torch-geometric ``Batch``; predictions are ``n``; the
ensemble's member predictions ``members × n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import CGConv, global_mean_pool

from voltloop.surrogates.materials.graphs import MAX_Z, NODE_FEATURES

#: z-value of the central 90 % interval of a standard normal.
Z90 = 1.6448536269514722


@dataclass(frozen=True)
class GnnSettings:
    """Architecture and training (defaults sized for ~300 structures on one CPU core;
    docs/decisions/0064 gives the measured cost)."""

    hidden: int = 32
    layers: int = 2
    gaussians: int = 40
    members: int = 4
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    calibration_fraction: float = 0.2
    seed: int = 0


class CrystalGraphNet(nn.Module):
    """CGCNN-style regressor: graphs → one value each (standardised units)."""

    def __init__(self, settings: GnnSettings):
        super().__init__()
        h = settings.hidden
        self.embedding = nn.Embedding(MAX_Z + 1, h)
        self.descriptors = nn.Linear(len(NODE_FEATURES), h)
        self.convs = nn.ModuleList(
            CGConv(h, dim=settings.gaussians, batch_norm=True) for _ in range(settings.layers)
        )
        self.head = nn.Sequential(nn.Linear(h, h), nn.Softplus(), nn.Linear(h, 1))

    def embed(self, batch: Batch) -> torch.Tensor:
        """Pooled crystal embedding, ``graphs × hidden``."""
        h = self.embedding(batch.z) + self.descriptors(batch.x)
        for conv in self.convs:
            h = conv(h, batch.edge_index, batch.edge_attr)
        return global_mean_pool(h, batch.batch)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.embed(batch)).squeeze(-1)


class GraphEnsemble:
    """A deep ensemble of :class:`CrystalGraphNet` with a recalibrated predictive std."""

    def __init__(self, settings: GnnSettings | None = None):
        self.settings = settings or GnnSettings()
        self.members: list[CrystalGraphNet] = []
        self.y_mean = 0.0
        self.y_std = 1.0
        self.std_scale = 1.0
        self.train_seconds = 0.0

    # --- training -------------------------------------------------------------------
    def fit(self, graphs: list[Data], y: np.ndarray) -> GraphEnsemble:
        """Train every member on ``graphs`` (length ``n``) with targets ``y`` (``n``)."""
        import time

        y = np.asarray(y, dtype=float)
        if len(graphs) != len(y) or len(y) < 4:
            raise ValueError(f"need ≥ 4 graphs with one target each; got {len(graphs)}, {len(y)}")
        if not np.all(np.isfinite(y)):
            raise ValueError("materials targets must be finite")
        t0 = time.perf_counter()
        rng = np.random.default_rng(self.settings.seed)
        order = rng.permutation(len(y))
        n_cal = max(2, int(round(self.settings.calibration_fraction * len(y))))
        cal, train = order[:n_cal], order[n_cal:]
        self.y_mean = float(y[train].mean())
        self.y_std = float(y[train].std()) or 1.0
        targets = torch.tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
        data = [g.clone() for g in graphs]
        for g, t in zip(data, targets, strict=True):
            g.y = t.reshape(1)
        self.members = [
            self._train_member([data[i] for i in train], self.settings.seed + m)
            for m in range(self.settings.members)
        ]
        mean, std = self.predict([graphs[i] for i in cal], calibrated=False)
        ratio = np.abs(y[cal] - mean) / np.maximum(std, 1e-9)
        self.std_scale = float(max(np.quantile(ratio, 0.9) / Z90, 1e-3))
        self.train_seconds = time.perf_counter() - t0
        return self

    def _train_member(self, data: list[Data], seed: int) -> CrystalGraphNet:
        torch.manual_seed(seed)
        net = CrystalGraphNet(self.settings)
        optimiser = torch.optim.AdamW(
            net.parameters(),
            lr=self.settings.learning_rate,
            weight_decay=self.settings.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, self.settings.epochs)
        generator = torch.Generator().manual_seed(seed)
        loader = DataLoader(
            data, batch_size=self.settings.batch_size, shuffle=True, generator=generator
        )
        net.train()
        for _ in range(self.settings.epochs):
            for batch in loader:
                optimiser.zero_grad()
                loss = nn.functional.mse_loss(net(batch), batch.y)
                loss.backward()
                optimiser.step()
            schedule.step()
        net.eval()
        return net

    # --- prediction -------------------------------------------------------------------
    def member_predictions(self, graphs: list[Data], batch_size: int = 256) -> np.ndarray:
        """Predictions of every member in target units, ``members × n``."""
        if not self.members:
            raise RuntimeError("the ensemble is not trained")
        out = np.empty((len(self.members), len(graphs)))
        with torch.no_grad():
            for start in range(0, len(graphs), batch_size):
                batch = Batch.from_data_list(graphs[start : start + batch_size])
                for m, net in enumerate(self.members):
                    out[m, start : start + len(graphs[start : start + batch_size])] = net(
                        batch
                    ).numpy()
        return out * self.y_std + self.y_mean

    def predict(self, graphs: list[Data], calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (``n`` each); ``calibrated`` applies the fitted std scale."""
        preds = self.member_predictions(graphs)
        std = preds.std(axis=0, ddof=1) if len(self.members) > 1 else np.zeros(preds.shape[1])
        scale = self.std_scale if calibrated else 1.0
        return preds.mean(axis=0), np.maximum(std * scale, 1e-9)

    def predict_with_embeddings(
        self, graphs: list[Data], batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated mean and std (``n``) and member-averaged embeddings (``n × hidden``)
        in one pass over the graphs."""
        preds, embeds = [], []
        with torch.no_grad():
            for start in range(0, len(graphs), batch_size):
                batch = Batch.from_data_list(graphs[start : start + batch_size])
                member_embeds = [net.embed(batch) for net in self.members]
                preds.append(
                    torch.stack(
                        [
                            net.head(e).squeeze(-1)
                            for net, e in zip(self.members, member_embeds, strict=True)
                        ]
                    )
                )
                embeds.append(torch.stack(member_embeds).mean(0))
        values = torch.cat(preds, dim=1).numpy() * self.y_std + self.y_mean
        std = values.std(axis=0, ddof=1) if len(self.members) > 1 else np.zeros(values.shape[1])
        return (
            values.mean(axis=0),
            np.maximum(std * self.std_scale, 1e-9),
            torch.cat(embeds).numpy(),
        )

    def embed(self, graphs: list[Data], batch_size: int = 256) -> np.ndarray:
        """Member-averaged crystal embeddings, ``n × hidden``."""
        parts = []
        with torch.no_grad():
            for start in range(0, len(graphs), batch_size):
                batch = Batch.from_data_list(graphs[start : start + batch_size])
                parts.append(torch.stack([net.embed(batch) for net in self.members]).mean(0))
        return torch.cat(parts).numpy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (safe to save with ``torch.save`` and load with ``weights_only``)."""
        state: dict[str, torch.Tensor] = {
            "meta.y_mean": torch.tensor(self.y_mean),
            "meta.y_std": torch.tensor(self.y_std),
            "meta.std_scale": torch.tensor(self.std_scale),
        }
        for m, net in enumerate(self.members):
            for key, value in net.state_dict().items():
                state[f"member{m}.{key}"] = value
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> GraphEnsemble:
        self.y_mean = float(state["meta.y_mean"])
        self.y_std = float(state["meta.y_std"])
        self.std_scale = float(state["meta.std_scale"])
        self.members = []
        m = 0
        while any(k.startswith(f"member{m}.") for k in state):
            net = CrystalGraphNet(self.settings)
            prefix = f"member{m}."
            net.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )
            net.eval()
            self.members.append(net)
            m += 1
        return self


def interval_coverage(
    y: np.ndarray, mean: np.ndarray, std: np.ndarray, level: float = 0.9
) -> float:
    """Fraction of ``y`` inside the central ``level`` Gaussian interval (``n`` arrays)."""
    from scipy.stats import norm

    half = norm.ppf(0.5 + level / 2) * std
    return float(np.mean(np.abs(np.asarray(y) - mean) <= half))


class PoolPosteriorModel(Model):
    """BoTorch model over a candidate pool: input = pool index, output = the property.

    ``mean`` and ``std`` (shape ``n``) are the predictions for the pool's candidates;
    the posterior at ``X`` (``b × q × 1`` indices) is Gaussian with independent points.
    Wraps any predictor — the GNN ensemble or a GP on its embeddings.
    """

    _num_outputs = 1

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.register_buffer("pool_mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("pool_var", torch.as_tensor(std, dtype=torch.float64) ** 2)

    @property
    def num_outputs(self) -> int:
        return 1

    def posterior(
        self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs
    ) -> GPyTorchPosterior:
        idx = X[..., 0].round().long().clamp(0, self.pool_mean.numel() - 1)
        mean = self.pool_mean[idx]
        var = self.pool_var[idx].clamp_min(1e-12)
        # a diagonal operator: sampling n independent points costs O(n), not a dense
        # n × n Cholesky (the joint-sample batch builder draws the whole pool at once)
        posterior = GPyTorchPosterior(MultivariateNormal(mean, DiagLinearOperator(var)))
        if posterior_transform is not None:
            return posterior_transform(posterior)
        return posterior
