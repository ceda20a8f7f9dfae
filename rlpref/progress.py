"""Progress bars for long work (tqdm; quiet when RLPREF_QUIET=1 or stderr is not a terminal in CI)."""

from __future__ import annotations

import os

from tqdm.auto import tqdm

__all__ = ["StepProgress", "progress_enabled"]


def progress_enabled() -> bool:
    return os.environ.get("RLPREF_QUIET", "0") != "1"


class StepProgress:
    """A bar driven by an absolute step count (SB3 callbacks know ``num_timesteps``, not increments)."""

    def __init__(self, total: int, desc: str):
        self.bar = tqdm(total=total, desc=desc, unit="step", disable=not progress_enabled(), mininterval=1.0)
        self.seen = 0

    def update(self, step: int) -> None:
        if step > self.seen:
            self.bar.update(min(step, self.bar.total) - min(self.seen, self.bar.total))
            self.seen = step

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
