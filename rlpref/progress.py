"""Progress for long work: per-stage tqdm bars and one overall line per stage with an ETA for the run.

Bars are quiet when ``RLPREF_QUIET=1``. The overall line ("stage k/n name — elapsed, ETA for the whole
run") goes through :mod:`logging`, so it reaches the console and the run's ``run.log`` alike.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from tqdm.auto import tqdm

__all__ = ["RunProgress", "StepProgress", "advance_stage", "format_seconds", "progress_enabled", "progress_note"]

log = logging.getLogger("rlpref")


def progress_enabled() -> bool:
    return os.environ.get("RLPREF_QUIET", "0") != "1"


def format_seconds(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour)."""
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunProgress:
    """The whole run's progress over named stages with prior cost estimates (any unit, e.g. env steps).

    The ETA is the remaining estimated cost times the run's measured seconds per unit of cost; until the
    stages built so far carry 5 % of the cost, ``seconds_per_unit`` (a prior) is used. Reused (cached) stages leave
    the plan and do not bend the measured rate. While a stage runs, the step bars report the fraction
    done (:meth:`advance`; a resumed stage first reports where it restarts, :meth:`resume_at`), work
    between steps (an online round's rollout) keeps the line coming (:meth:`note`), and a line is logged
    at most every ``every`` seconds. Until anything is measured the ETA is the prior's guess, and says so.
    """

    current: Optional["RunProgress"] = None  # the run in progress, which step bars report to

    def __init__(self, stages: Sequence[tuple[str, float]], seconds_per_unit: float, every: float = 60.0):
        self.names = [name for name, _ in stages]
        self.cost = {name: float(c) for name, c in stages}
        self.prior = float(seconds_per_unit)
        self.every = every
        self.t0 = time.perf_counter()
        self.done_cost = 0.0  # cost of stages built so far
        self.built_seconds = 0.0  # seconds those stages took
        self.stage_name: Optional[str] = None
        self.stage_t0 = 0.0
        self.fraction = 0.0
        self.start_fraction = 0.0  # where the running stage (re)started: a resumed stage's pace counts from there
        self._last_line = 0.0

    def _rate(self) -> float:
        """Measured seconds per unit once the built stages carry ≥ 5 % of the cost still planned, else the prior:
        a stage of nominal cost (a teacher labelling in a second) must not set the pace of an hour's agent."""
        left = sum(self.cost.values())
        measured = self.done_cost > 0 and self.built_seconds > 0 and self.done_cost >= 0.05 * (self.done_cost + left)
        return self.built_seconds / self.done_cost if measured else self.prior

    def eta(self) -> float:
        """Seconds left for the whole run: the running stage at its own pace once it is 5 % done (at the
        run's rate before that), the stages after it at the run's rate."""
        rate = self._rate()
        if self.stage_name is None:
            return sum(self.cost.values()) * rate
        after = self.names[self.names.index(self.stage_name) + 1 :]
        left = sum(self.cost[n] for n in after) * rate
        if self._paced():
            elapsed = time.perf_counter() - self.stage_t0
            return left + elapsed / (self.fraction - self.start_fraction) * (1.0 - self.fraction)
        return left + self.cost[self.stage_name] * (1.0 - self.fraction) * rate

    def _paced(self) -> bool:
        """The running stage has done enough (5 %) since it (re)started to extrapolate its own pace."""
        return self.stage_name is not None and self.fraction - self.start_fraction > 0.05

    def line(self, note: str = "") -> str:
        k = self.names.index(self.stage_name) + 1 if self.stage_name in self.names else 0
        guess = " (a guess until 5 % is done)" if self.done_cost == 0 and not self._paced() else ""
        return (f"stage {k}/{len(self.names)} {self.stage_name} — elapsed {format_seconds(time.perf_counter() - self.t0)}, "
                f"ETA {format_seconds(self.eta())} for the whole run{guess}" + (f"; {note}" if note else ""))

    @contextmanager
    def stage(self, name: str, cached: bool = False) -> Iterator["RunProgress"]:
        """Run stage ``name``: a built stage calibrates the run's rate, a cached one leaves the plan."""
        k = self.names.index(name) + 1
        if cached:
            log.info("stage %d/%d %s — reused from the cache", k, len(self.names), name)
        self.stage_name, self.stage_t0, self.fraction, self.start_fraction = name, time.perf_counter(), 0.0, 0.0
        self._last_line = time.perf_counter()
        if not cached:
            log.info(self.line())
        previous, RunProgress.current = RunProgress.current, self
        try:
            yield self
            if not cached:
                self.done_cost += self.cost[name]
                self.built_seconds += time.perf_counter() - self.stage_t0
        finally:
            RunProgress.current = previous
            self.cost[name] = 0.0
            self.stage_name, self.fraction, self.start_fraction = None, 0.0, 0.0

    def resume_at(self, fraction: float) -> None:
        """The running stage restarts ``fraction`` done (a resumed state): its pace counts from here."""
        self.fraction = self.start_fraction = min(max(fraction, 0.0), 1.0)

    def advance(self, fraction: float) -> None:
        """The running stage is ``fraction`` done; logs the overall line when it is due."""
        self.fraction = min(max(fraction, 0.0), 1.0)
        self.note()

    def note(self, what: str = "") -> None:
        """Log the overall line, with ``what`` is going on, if one is due; cheap enough to call every step."""
        now = time.perf_counter()
        if now - self._last_line >= self.every:
            self._last_line = now
            log.info(self.line(what))


def advance_stage(fraction: float) -> None:
    """Tell the run in progress (if any) that its running stage is ``fraction`` done."""
    if RunProgress.current is not None:
        RunProgress.current.advance(fraction)


def progress_note(what: str) -> None:
    """Work that moves no step count (a rollout inside a stage): keep the run's line coming, saying ``what``."""
    if RunProgress.current is not None:
        RunProgress.current.note(what)


class StepProgress:
    """A bar driven by an absolute step count (SB3 callbacks know ``num_timesteps``, not increments);
    it also tells the running :class:`RunProgress` how far its stage is."""

    def __init__(self, total: int, desc: str, start: int = 0):
        """``start``: the step a resumed stage continues from (the bar and the run's pace start there)."""
        self.bar = tqdm(total=total, desc=desc, unit="step", disable=not progress_enabled(), mininterval=1.0,
                        initial=min(start, total))
        self.seen = start
        if start and total and RunProgress.current is not None:
            RunProgress.current.resume_at(start / total)

    def update(self, step: int) -> None:
        if step > self.seen:
            self.bar.update(min(step, self.bar.total) - min(self.seen, self.bar.total))
            self.seen = step
            if self.bar.total:
                advance_stage(step / self.bar.total)

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
