"""The experiment grid: datasets × training fractions × learners × trials, batched.

For every training fraction, all (dataset, learner, trial) fits that share the number of training
pairs run as one stacked tensor program (:func:`rlpref.synthetic.learners.fit_stacked`). Each fit is
then scored on its trial's test pairs with :mod:`rlpref.metrics`: PDC, choice accuracy against the
observed choices, and order accuracy against the true utilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rlpref.metrics import choice_accuracy, order_accuracy, pdc
from rlpref.schema import Section, rule

from .learners import (
    FitData,
    LearnerSpec,
    TrainConfig,
    fit_data,
    fit_stacked,
    get_learner,
    init_learner,
    permutation_rng,
    predict_stacked,
)
from .trials import DatasetSpec, TrialBatch, generate_dataset, kendall_tau_strength

__all__ = ["GridConfig", "n_train_pairs", "run_grid"]

RESULT_COLUMNS = [
    "dataset", "learner", "fraction", "n_train", "trial", "pdc", "accuracy", "true_accuracy", "kendall_tau",
]


@dataclass(frozen=True)
class GridConfig(Section):
    """The grid (``grid.*``), typed and checked on construction: a bad value names its key."""

    SECTION = "grid"
    learners: tuple[str, ...] = ("bt", "rr", "rr_pooled", "rr_perm", "rt_regression", "rt_regression_perm", "clf")
    fractions: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    n_trials: int = rule(100, ge=1)
    first_trial: int = rule(0, ge=0)
    seed: int = rule(0, ge=0)
    max_fits_per_program: int = rule(5000, ge=1)
    eval_chunk: int = rule(512, ge=1)
    reference_quirks: bool = False  # reproduce known quirks of the reference implementation (see README of the track)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "learners", tuple(self.learners))
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        for name in self.learners:
            get_learner(name)  # clear error for unknown names
        if len(set(self.learners)) != len(self.learners):
            raise ValueError(f"duplicate learners in {list(self.learners)}")
        bad = [f for f in self.fractions if not 0 < f <= 1]
        if bad:
            raise ValueError(f"training fractions must lie in (0, 1], got {bad}")


def n_train_pairs(fraction: float, n_train: int) -> int:
    """Number of training pairs used at a fraction (the first pairs of the training split)."""
    n = int(math.floor(fraction * n_train + 1e-9))
    if n < 1:
        raise ValueError(f"fraction {fraction} of {n_train} training pairs leaves no pair")
    return n


@dataclass(frozen=True)
class _Fit:
    batch: TrialBatch
    pos: int  # trial position in the batch
    learner: LearnerSpec
    fraction: float
    n: int


def _fit_input(fit: _Fit, seed: int, quirks: bool = False) -> FitData:
    b, i, n = fit.batch, fit.pos, fit.n
    perm = permutation_rng(seed, int(b.trials[i]), n) if fit.learner.permute else None
    return fit_data(fit.learner, b.x1[i, :n], b.x2[i, :n], b.y[i, :n], b.rt[i, :n], b.stratum[i, :n], perm,
                    ties="index" if quirks else "split")


def _score(fits: Sequence[_Fit], params, chunk: int) -> list[dict]:
    rows = []
    for s in range(0, len(fits), chunk):
        part = fits[s : s + chunk]
        x_test = np.stack(
            [np.concatenate([f.batch.x1[f.pos, f.batch.spec.n_train :], f.batch.x2[f.pos, f.batch.spec.n_train :]]) for f in part]
        )
        pred = predict_stacked([(w[s : s + chunk], b[s : s + chunk]) for w, b in params], x_test, chunk=chunk)
        for f, p in zip(part, pred):
            b, i, n_tr = f.batch, f.pos, f.batch.spec.n_train
            m = p.shape[0] // 2
            p1, p2 = p[:m], p[m:]
            u1, u2, y = b.u1[i, n_tr:], b.u2[i, n_tr:], b.y[i, n_tr:]
            rows.append(
                dict(
                    dataset=b.spec.name,
                    learner=f.learner.name,
                    fraction=f.fraction,
                    n_train=f.n,
                    trial=int(b.trials[i]),
                    pdc=pdc(u1 - u2, p1 - p2),
                    accuracy=choice_accuracy(np.where(y, p1, p2), np.where(y, p2, p1)),
                    true_accuracy=order_accuracy(u1, u2, p1, p2),
                )
            )
    return rows


def run_grid(
    datasets: Iterable[DatasetSpec],
    grid: GridConfig,
    train: TrainConfig = TrainConfig(),
    *,
    progress: bool = True,
    batches: Optional[Sequence[TrialBatch]] = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the grid; returns (results: one row per dataset × learner × fraction × trial,
    diagnostics: one row per dataset × trial with the Kendall τ of strength vs |Δu| on test pairs)."""
    datasets = list(datasets)
    if not datasets:
        raise ValueError("no datasets given")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate dataset names {names}")
    trials = range(grid.first_trial, grid.first_trial + grid.n_trials)
    if batches is None:
        batches = [generate_dataset(spec, grid.seed, trials) for spec in datasets]
    diag = pd.concat(
        [pd.DataFrame(dict(dataset=b.spec.name, trial=b.trials, kendall_tau=kendall_tau_strength(b))) for b in batches],
        ignore_index=True,
    )
    learners = [get_learner(name) for name in grid.learners]
    # Programs: fits sharing a fraction and a number of training pairs, at most max_fits_per_program each.
    programs: list[list[_Fit]] = []
    for fraction in grid.fractions:
        by_n: dict[int, list[_Fit]] = {}
        for b in batches:
            n = n_train_pairs(fraction, b.spec.n_train)
            by_n.setdefault(n, []).extend(
                _Fit(b, i, lr, fraction, n) for lr in learners for i in range(len(b.trials))
            )
        for fits in by_n.values():
            for s in range(0, len(fits), grid.max_fits_per_program):
                programs.append(fits[s : s + grid.max_fits_per_program])
    n_features = batches[0].x1.shape[-1]
    inits = {int(t): init_learner(grid.seed, int(t), n_features, train) for t in trials}
    rows: list[dict] = []
    bar = tqdm(total=len(programs) * train.epochs, desc="synthetic grid", unit="epoch", disable=not progress)
    try:
        for fits in programs:
            bar.set_postfix(fraction=fits[0].fraction, fits=len(fits))
            params = fit_stacked(
                [f.learner for f in fits],
                [_fit_input(f, grid.seed, grid.reference_quirks) for f in fits],
                [inits[int(f.batch.trials[f.pos])] for f in fits],
                train,
                progress=lambda: bar.update(1),
            )
            rows.extend(_score(fits, params, grid.eval_chunk))
    finally:
        bar.close()
    results = pd.DataFrame(rows)
    results = results.merge(diag, on=["dataset", "trial"], how="left")[RESULT_COLUMNS]
    results = results.sort_values(["dataset", "learner", "fraction", "trial"], kind="stable").reset_index(drop=True)
    return results, diag
