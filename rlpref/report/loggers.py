"""Run loggers: ``logger=csv`` (default) and ``logger=wandb`` (offline by default).

Both write the same local files, so ``python -m rlpref.report`` never needs wandb:

- ``metrics.csv``  tidy ``step,key,value`` rows (``step``: agent env steps; 0 for what precedes the
  agent's training, e.g. the offline reward model), appended one row per ``os.write`` on an
  ``O_APPEND`` descriptor (atomic for a single small write on POSIX file systems, so a crash
  leaves whole lines and concurrent writers never interleave inside a line);
- ``curve.csv``    ``step,true_return_mean,true_return_std,n_episodes``: rewritten atomically
  (temp file + ``os.replace``) at every evaluation point, so it always holds this process's curve;
- ``summary.json`` the flattened scalar summary passed to ``log_summary`` (atomic write);
- ``videos.csv``   ``path`` of every video passed to ``log_video``.

The wandb logger additionally mirrors everything to a wandb run whose files live in ``run_dir/wandb``;
``mode`` defaults to ``offline`` (``disabled`` also works), so no account or network is needed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from rlpref.artifacts import atomic_write_text
from rlpref.control.records import CURVE_COLUMNS, curve_csv

__all__ = ["Logger", "CsvLogger", "WandbLogger", "make_logger", "flatten", "CURVE_COLUMNS"]



def _append_line(path: Path, line: str, header: Optional[str] = None) -> None:
    """Append one line with a single write on an O_APPEND descriptor (header first if the file is new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if header is not None and not path.exists():
        # O_EXCL: exactly one writer creates the file with its header
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            pass
        else:
            try:
                os.write(fd, (header + "\n").encode())
            finally:
                os.close(fd)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _csv_line(values) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def _to_scalar(value: Any) -> Any:
    """Plain Python scalar for numbers (numpy/torch included); None for anything else."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            out = item()
        except (ValueError, RuntimeError):  # arrays with more than one element
            return None
        return _to_scalar(out) if isinstance(out, (bool, int, float)) else None
    return None


def flatten(d: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested mapping -> {"a/b": scalar}; non-scalar leaves (lists, strings) are kept as they are."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out


class Logger:
    """Interface used by ``rlpref.run``; the base class writes the local files (csv logger)."""

    def __init__(self, run_dir: Path, config: Optional[Mapping[str, Any]] = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config or {})
        self.metrics_path = self.run_dir / "metrics.csv"
        self.curve_path = self.run_dir / "curve.csv"
        self.summary_path = self.run_dir / "summary.json"
        self.videos_path = self.run_dir / "videos.csv"
        self._curve: list[tuple[int, float, float, int]] = []
        self._closed = False

    # -- local files ---------------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """One tidy row per numeric metric (nested dicts are flattened to ``a/b`` keys), at agent step ``step``."""
        step_s = str(int(step))
        for key, value in flatten(metrics).items():
            scalar = _to_scalar(value)
            if scalar is None:
                continue
            _append_line(self.metrics_path, _csv_line([step_s, key, repr(float(scalar))]), header="step,key,value")

    def log_curve_point(self, step: int, mean: float, std: float, n: int) -> None:
        self._curve.append((int(step), float(mean), float(std), int(n)))
        atomic_write_text(self.curve_path, curve_csv([dict(zip(CURVE_COLUMNS, p)) for p in self._curve]))
        self.log_metrics({"eval/true_return_mean": mean, "eval/true_return_std": std, "eval/n_episodes": n}, step)

    def log_summary(self, results: Mapping[str, Any]) -> None:
        """``summary.json`` and ``summary/*`` rows at the run's last agent step (``results["agent_steps"]``)."""
        flat = {}
        for k, v in flatten({k: v for k, v in results.items() if k != "config"}).items():
            s = _to_scalar(v)
            if s is not None and not (isinstance(s, float) and math.isnan(s)):
                flat[k] = s
            elif isinstance(v, str):
                flat[k] = v
        atomic_write_text(self.summary_path, json.dumps(flat, indent=2, sort_keys=True) + "\n")
        self.log_metrics({f"summary/{k}": v for k, v in flat.items() if not isinstance(v, str)},
                         int(results.get("agent_steps", 0)))

    def log_video(self, path: Path) -> None:
        _append_line(self.videos_path, _csv_line([str(Path(path))]), header="path")

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CsvLogger(Logger):
    """``logger=csv``: the local files only."""


class WandbLogger(Logger):
    """``logger=wandb``: local files plus a wandb run (mode offline by default; files under run_dir/wandb)."""

    def __init__(self, run_dir: Path, config: Optional[Mapping[str, Any]] = None, cfg_logger: Optional[Mapping] = None):
        super().__init__(run_dir, config)
        cfg = dict(cfg_logger or {})
        mode = str(cfg.get("mode") or "offline")
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.mode must be offline|online|disabled, got {mode!r}")
        os.environ.setdefault("WANDB_SILENT", "true")
        if mode != "online":
            # never prompt for a login, never touch the network
            os.environ.setdefault("WANDB_MODE", mode)
        import wandb

        self._wandb = wandb
        wandb_dir = self.run_dir / str(cfg.get("dir") or ".")
        wandb_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=cfg.get("project") or "rlpref",
            entity=cfg.get("entity") or None,
            group=cfg.get("group") or None,
            name=cfg.get("run_name") or None,
            tags=list(cfg.get("tags") or []) or None,
            job_type=cfg.get("job_type") or None,
            config=self.config,
            dir=str(wandb_dir),
            mode=mode,
            reinit="finish_previous",
        )
        # every metric is plotted against our own step counter (stages use different step meanings)
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        super().log_metrics(metrics, step)
        payload = {k: s for k, v in flatten(metrics).items() if (s := _to_scalar(v)) is not None}
        payload["step"] = int(step)
        if len(payload) > 1:
            self.run.log(payload)

    def log_curve_point(self, step: int, mean: float, std: float, n: int) -> None:
        super().log_curve_point(step, mean, std, n)  # calls self.log_metrics -> wandb

    def log_summary(self, results: Mapping[str, Any]) -> None:
        super().log_summary(results)
        summary = json.loads(self.summary_path.read_text())
        for k, v in summary.items():
            self.run.summary[k] = v

    def log_video(self, path: Path) -> None:
        super().log_video(path)
        path = Path(path)
        self.run.log({f"video/{path.stem}": self._wandb.Video(str(path), format=path.suffix.lstrip(".") or "mp4")})

    def close(self) -> None:
        if not self._closed:
            self.run.finish()
        super().close()


def _as_dict(cfg: Any) -> dict:
    if cfg is None:
        return {}
    if isinstance(cfg, Mapping):
        return dict(cfg)
    try:  # OmegaConf DictConfig
        from omegaconf import OmegaConf

        return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except Exception as exc:  # pragma: no cover - unexpected config type
        raise TypeError(f"logger config must be a mapping, got {type(cfg)}") from exc


def make_logger(cfg_logger: Any, run_dir: Path, config: Optional[Mapping[str, Any]] = None) -> Logger:
    """Build the logger named by ``cfg_logger.name`` (``csv`` or ``wandb``)."""
    cfg = _as_dict(cfg_logger)
    name = str(cfg.get("name") or "csv")
    config = _as_dict(config)
    if name == "csv":
        return CsvLogger(run_dir, config)
    if name == "wandb":
        return WandbLogger(run_dir, config, cfg)
    raise ValueError(f"unknown logger {name!r}: choose csv or wandb")
