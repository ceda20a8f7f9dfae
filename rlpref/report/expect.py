"""A published direction per cell (e.g. the paper's "RR > BT on HalfCheetah at σ = 0.25"), held against the
sign the runs support, so a report says where it agrees with the paper and where it does not.

The file is CSV with a header ``env,sigma,method,paper,expected``: ``paper`` is the claim as published (free
text, shown as is), ``expected`` one of ``above`` (method > bt), ``below`` (method < bt) or ``not_below``
(method >= bt). Parsed with the csv module; a bad row is an error naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Expectation", "cell_key", "load_expectations", "verdict"]

EXPECTED = ("above", "below", "not_below")
COLUMNS = ("env", "sigma", "method", "paper", "expected")


def cell_key(env: str, sigma: float, method: str) -> tuple[str, float, str]:
    """How a claim and a table row are matched: σ rounded, so 0, 0.0 and "0.25" read from CSV or runs agree."""
    return env, round(float(sigma), 6), method


@dataclass(frozen=True)
class Expectation:
    paper: str  #: the claim as published, e.g. "RR ≫ BT"
    expected: str  #: one of :data:`EXPECTED`


def load_expectations(path: Path) -> dict[tuple[str, float, str], Expectation]:
    """{(env, sigma, method): Expectation} from ``path`` (format in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--expect {path}: no such file (CSV with columns {','.join(COLUMNS)})")
    with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's byte-order mark is no header
        reader = csv.reader(fh)
        header = tuple(h.strip() for h in next(reader, []))
        if header != COLUMNS:
            raise ValueError(f"{path}: header must be {','.join(COLUMNS)}, got {','.join(header) or 'nothing'}")
        out: dict[tuple[str, float, str], Expectation] = {}
        for fields in reader:
            where = f"{path}, line {reader.line_num}"
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(COLUMNS):
                raise ValueError(f"{where}: {len(fields)} fields, need {len(COLUMNS)} ({','.join(COLUMNS)})")
            row = dict(zip(COLUMNS, (f.strip() for f in fields)))
            if row["expected"] not in EXPECTED:
                raise ValueError(f"{where}: expected is '{row['expected']}'; use one of {', '.join(EXPECTED)}")
            try:
                key = cell_key(row["env"], row["sigma"], row["method"])
            except ValueError:
                key = (row["env"], float("nan"), row["method"])
            if not math.isfinite(key[1]):
                raise ValueError(f"{where}: sigma '{row['sigma']}' is not a finite number")
            if key in out:
                raise ValueError(f"{where}: a second row for {row['env']}, σ = {key[1]:g}, {row['method']}")
            out[key] = Expectation(row["paper"], row["expected"])
    return out


def verdict(sign: str, expected: str) -> str:
    """Whether a measured sign ("above", "below", "inside the spread") agrees with an expected direction:
    "agrees", "disagrees" (the CI lies on the other side) or "not shown" (inside the spread where the paper
    claims a strict difference)."""
    if sign == "inside the spread":
        return "agrees" if expected == "not_below" else "not shown"
    if expected == "not_below":
        return "agrees" if sign == "above" else "disagrees"
    return "agrees" if sign == expected else "disagrees"
