"""Expand a sweep preset into a table of runs: ``python -m rlpref.sweep paper > rows.txt``.

Each output line is the Hydra overrides of one run of ``python -m rlpref.run``, in the order Hydra's
basic sweeper would launch them (the cartesian product of ``hydra.sweeper.params``, last key fastest).
``scripts/slurm_array.sh`` runs row ``$SLURM_ARRAY_TASK_ID`` of such a table, for clusters where users
prefer plain ``sbatch`` arrays over ``hydra/launcher=slurm``. Extra arguments are overrides added to
every row (``python -m rlpref.sweep paper cache_dir=/shared/cache``); one naming a swept key replaces
that axis, as on Hydra's command line (``python -m rlpref.sweep paper seed=0``).

``python -m rlpref.sweep --waves rows.txt`` prints two sbatch ``--array`` index lists for a table: the
*lead* rows (one learned row per group of rows that share their source agent and segments, and every
true-reward row), then the rest. Submitting the rest after the lead (``--dependency=afterany``) keeps a task
from holding a core while it waits on another task's lock (``scripts/slurm_paper_sigma25.sh``, WAVES=2).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["index_spec", "lead_rows", "sweep_rows"]

#: keys that select the teacher, the reward model or its loss: rows that differ only in these share their
#: source agent and segments (their cache keys do not read them)
DOWNSTREAM = ("loss=", "teacher.", "reward_model.", "+reward_model.", "reward_fit=", "+reward_fit=", "reward_norm=")

CONF = Path(__file__).resolve().parents[1] / "conf"


def _presets() -> list[str]:
    return sorted(p.stem for p in (CONF / "sweep").glob("*.yaml") if p.stem != "none")


def sweep_rows(preset: str, extra: Sequence[str] = ()) -> list[str]:
    """The runs of a preset as override strings (``sweep=<preset>`` first, so its fixed choices apply).

    An extra override naming a swept key replaces that axis: a value fixes it (it joins every row), a list
    (``seed=0,1``) sweeps those values instead; a list for a key the preset does not sweep adds an axis."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if preset not in _presets():
        raise ValueError(f"unknown sweep preset '{preset}'; choose one of: {', '.join(_presets())}")
    parser = OverridesParser.create()
    parsed = [(e, parser.parse_override(e)) for e in extra]
    fixed = [e for e, o in parsed if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"sweep={preset}", *fixed], return_hydra_config=True)
    params = {k: str(v) for k, v in dict(cfg.hydra.sweeper.params or {}).items()}
    for e, o in parsed:  # a re-swept axis keeps its place in the preset's order (last key fastest)
        if o.is_sweep_override():
            params[o.key_or_group] = e.split("=", 1)[1]
        else:
            params.pop(o.key_or_group, None)
    axes = []
    for key, values in params.items():
        override = parser.parse_override(f"{key}={values}")
        choices = [str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override() else [values]
        axes.append([f"{key}={v}" for v in choices])
    head = [f"sweep={preset}", *fixed]
    return [" ".join([*head, *combo]) for combo in itertools.product(*axes)]


def lead_rows(rows: Sequence[str]) -> list[int]:
    """Indices of the rows a first wave should run: every true-reward row (``reward=oracle``: it shares no
    stage) and the first learned row of each group of rows equal but for :data:`DOWNSTREAM` keys (it builds
    the group's source agent and segments, which the rest of the group then reuses). Made for the offline
    protocol (``budget=paper``); under ``protocol=online`` nothing is shared before the teacher, so the
    second wave only starts later than it could. Keys not in :data:`DOWNSTREAM` split groups: that errs
    towards more lead rows, never towards a second-wave row building a source."""
    seen: set[tuple[str, ...]] = set()
    lead = []
    for i, row in enumerate(rows):
        tokens = row.split()
        if "reward=oracle" in tokens:
            lead.append(i)
            continue
        group = tuple(sorted(t for t in tokens if not t.startswith(DOWNSTREAM)))
        if group not in seen:
            seen.add(group)
            lead.append(i)
    return lead


def index_spec(indices: Sequence[int]) -> str:
    """sbatch ``--array`` syntax for sorted indices, runs collapsed: [0, 1, 2, 5] -> ``0-2,5``."""
    parts, idx = [], sorted(indices)
    for _, run in itertools.groupby(enumerate(idx), key=lambda p: p[1] - p[0]):
        run = [v for _, v in run]
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def _waves(table: str) -> int:
    path = Path(table)
    if not path.is_file():
        print(f"rlpref.sweep --waves: {table} not found (a table of rows, e.g. from python -m rlpref.sweep paper)",
              file=sys.stderr)
        return 2
    rows = path.read_text().splitlines()
    lead = lead_rows(rows)
    print(index_spec(lead))
    print(index_spec(sorted(set(range(len(rows))) - set(lead))))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\npresets: {', '.join(_presets())}")
        return 0 if args else 2
    if args[0] == "--waves":
        if len(args) != 2:
            print("usage: python -m rlpref.sweep --waves ROWS_FILE", file=sys.stderr)
            return 2
        return _waves(args[1])
    try:
        for row in sweep_rows(args[0], args[1:]):
            print(row)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `python -m rlpref.sweep paper | head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
