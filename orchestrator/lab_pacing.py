"""How a dry run moves its simulated lab between the host's poll sweeps (decision 0085)."""

from __future__ import annotations

from typing import Any

#: Most lab steps a dry run advances between two host sweeps while no cell needs the
#: host (:class:`LabPacer`).
QUIET_STEPS_MAX = 6


class LabPacer:
    """Advances the simulated lab between the host's poll sweeps.

    One step (``step_s``, the dry run's ``DRY_RUN_STEP_S``) per sweep. While every
    running cell only cycles on (past its early-prediction cycle, above end of life),
    further steps follow before the next sweep, up to ``QUIET_STEPS_MAX``, until a
    step ends with some channel needing the host: a checkpoint reached, a protocol
    ended or tripped, a cell past end of life. The host would have done nothing at the
    sweeps skipped but read records, and every decision still comes at the same step
    boundary, so the campaign is the same; it only runs faster where cells run to end
    of life (a confirmation round, ``run_to_end_of_life``).
    """

    def __init__(self, lab: Any, step_s: float, early_cycle: int | None, eol_ah: float):
        self.lab = lab
        self.step_s = step_s
        self.early_cycle = early_cycle
        self.eol_ah = eol_ah
        self.sweeps_skipped = 0

    def _channels(self) -> list[tuple[str, int]]:
        return [
            (str(st.state), st.cycle)
            for st in (self.lab.status(ch) for ch in range(self.lab.channel_count))
        ]

    def _cycling_on(self, channels: list[tuple[str, int]]) -> bool:
        """Some cell is running, and every running one is past its early prediction
        (the host has seen that cycle) and above end of life."""
        running = [ch for ch, (state, _) in enumerate(channels) if state == "running"]
        if not running or any(state == "waiting_eis" for state, _ in channels):
            return False
        for ch in running:
            if self.early_cycle is not None and channels[ch][1] <= self.early_cycle:
                return False
            capacities = self.lab.capacities(ch)[1:]
            if capacities.size and float(capacities.min()) < self.eol_ah:
                return False
        return True

    def advance(self) -> None:
        before = self._channels()
        quiet = self._cycling_on(before)
        self.lab.advance(self.step_s)
        for _ in range(QUIET_STEPS_MAX - 1):
            if not quiet:
                return
            now = self._channels()
            if [state for state, _ in now] != [state for state, _ in before]:
                return
            quiet = self._cycling_on(now)
            if not quiet:
                return
            self.lab.advance(self.step_s)
            self.sweeps_skipped += 1
