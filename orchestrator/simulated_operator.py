"""The operator's part in a dry run, played by the simulated lab's loader.

In a real lab a person builds each cell and puts it into its channel. In a dry run
the loader (a simulator-only surface, never the instrument protocol) places a
virtual cell of the campaign's cell type — or made from the candidate material —
drawn with its cell-to-cell variation from a seed derived from the cell id, so a
resumed run loads the very same cell again.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

from voltloop.campaigns.base import CampaignBase
from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState, VirtualLab
from voltloop.orchestrator.ports import LoadingSlot, LoadOutcome

_BUSY = (ChannelState.RUNNING, ChannelState.WAITING_EIS)


def cell_seed(campaign_seed: int, cell_id: str) -> int:
    """The variation seed of a virtual cell: stable across runs and resumes."""
    return (campaign_seed * 1_000_003 + zlib.crc32(cell_id.encode())) % 2**32


class SimulatedOperator:
    """Implements ``orchestrator.ports.Operator`` with the simulated lab's loader."""

    def __init__(self, labs: Mapping[str, VirtualLab], spec: CampaignBase):
        self.labs = dict(labs)  # by the cycler URL of the campaign spec
        self.spec = spec

    def load(self, slots: Sequence[LoadingSlot]) -> dict[str, LoadOutcome]:
        outcomes: dict[str, LoadOutcome] = {}
        for slot in slots:
            lab = self.labs[slot.cycler_url]
            status = lab.status(slot.channel)
            if status.cell_id == slot.cell_id:  # loaded before a crash: same cell
                outcomes[slot.experiment_id] = LoadOutcome.LOADED
                continue
            if status.state in _BUSY:
                outcomes[slot.experiment_id] = LoadOutcome.WAITING
                continue
            lab.load_cell(
                slot.channel,
                CellSpec(
                    cell_id=slot.cell_id,
                    kind=self.spec.cell.kind,
                    seed=cell_seed(self.spec.seed, slot.cell_id),
                    material=slot.material,
                    chamber_temperature_C=self.spec.cell.chamber_temperature_C,
                ),
            )
            outcomes[slot.experiment_id] = LoadOutcome.LOADED
        return outcomes

    def attach_potentiostat(self, cycler_url: str, channel: int) -> None:
        self.labs[cycler_url].attach_potentiostat(channel)
