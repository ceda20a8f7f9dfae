"""Typed config of the LLM track: every key's type, default and allowed range, declared once.

``conf/llm/config.yaml`` with its ``experiment`` and ``model`` groups is read once, by
:meth:`LLMRunConfig.from_config`, into :mod:`rlpref.schema` sections that are checked before any
work: an unknown key, a value of the wrong type or one out of range fails at once with the dotted
key, the value and what is allowed (``llm model.lr='abc': must be a number > 0``), not as a bare
``float()`` error deep inside training. The trainer then reads typed fields only.

Defaults are the fallbacks the trainer has always used for a missing (or null) key, so a config
that ran before runs the same. Where a key had no fallback, the default is the value of the default
composition (``experiment=rr_agree``, ``model=frozen``). Four model keys have a fallback that the
model groups override: ``epochs`` (1), ``min_steps`` (0), ``weight_decay`` (0.0) and ``grad_clip``
(0.0) apply only to hand-built configs; ``conf/llm/model/*.yaml`` set them for every Hydra run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from rlpref.llm.multipref import ANNOTATOR_POOLS
from rlpref.llm.strength import STRENGTHS
from rlpref.losses import LOSS_SPECS
from rlpref.schema import ConfigError, Section, build, rule

__all__ = [
    "DATA_SOURCES",
    "MODEL_KINDS",
    "STRATA_KINDS",
    "LLMConfigError",
    "LLMDataConfig",
    "LLMEvalConfig",
    "LLMModelConfig",
    "LLMRunConfig",
    "LLMSimulatedConfig",
    "LLMStrataConfig",
    "LLMUKPConfig",
]

DATA_SOURCES = ("auto", "file", "hub", "simulated", "ukpconvarg1")
MODEL_KINDS = ("frozen", "finetune")
STRATA_KINDS = ("annotator", "prompt", "global")

#: Strength signals UKPConvArg1 cannot give, and why (time: docs/results/llm_ukp/signals.json).
UKP_REFUSED_STRENGTHS = {
    "stated": "UKPConvArg1 workers state no strength (a vote is a1, a2 or equal)",
    "time": ("UKPConvArg1 times a whole HIT of 3 pairs, and HIT time barely tracks the vote margin "
             "(Spearman -0.017 over 28,224 assignments, -0.034 within worker)"),
}

LLMConfigError = ConfigError  # the name the trainer and its callers catch


class _LLMSection(Section):
    """What every LLM section shares: messages start with 'llm', and the trainer's old lookups keep their
    leniency (a null key takes its default; an int where text is expected, ``data.split_salt=7``, is its text)."""

    ROOT = "llm"
    NULL_IS_DEFAULT = True
    INT_AS_STR = True


@dataclasses.dataclass(frozen=True)
class LLMSimulatedConfig(_LLMSection):
    """``data.simulated``: the offline stand-in (:func:`rlpref.llm.simulated.simulated_dataset`)."""

    SECTION = "data.simulated"
    n_comparisons: int = rule(5000, ge=1)
    n_normal: int = rule(16, ge=2)  # each comparison gets two annotations from distinct annotators
    n_expert: int = rule(8, ge=2)
    seed: int = rule(0, ge=0)
    max_doc_items: int = rule(600, ge=0)


@dataclasses.dataclass(frozen=True)
class LLMUKPConfig(_LLMSection):
    """``data.ukp``: UKPConvArg1's cross-topic folds (:mod:`rlpref.llm.crosstopic`) and its download."""

    SECTION = "data.ukp"
    folds: int = rule(8, ge=2, le=16)  # k-fold over the 16 debates; 16 = leave-one-debate-out
    fold: int = rule(0, ge=0, le=15)  # the held-out fold of a single run
    download: bool = rule(True)  # without data.path and cache: try the repository once

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fold >= self.folds:
            raise ConfigError(f"llm data.ukp.fold={self.fold}: must be < data.ukp.folds={self.folds}")


@dataclasses.dataclass(frozen=True)
class LLMDataConfig(_LLMSection):
    """``data``: where comparisons come from and how they are split."""

    SECTION = "data"
    source: str = rule("auto", choices=DATA_SOURCES)
    path: Optional[str] = rule(None)
    hub_id: str = rule("allenai/multipref")
    hub_config: str = rule("default")
    annotators: str = rule("all", choices=ANNOTATOR_POOLS)
    test_fraction: float = rule(0.2, gt=0.0, lt=1.0)
    split_salt: str = rule("rlpref-llm")
    simulated: LLMSimulatedConfig = rule(default_factory=LLMSimulatedConfig)
    ukp: LLMUKPConfig = rule(default_factory=LLMUKPConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source == "file" and not self.path:
            raise ConfigError("llm data.source=file needs data.path=<MultiPref .jsonl/.json/.parquet file>")


def _is_torch_dtype(name: str) -> bool:
    return isinstance(getattr(torch, name, None), torch.dtype)


@dataclasses.dataclass(frozen=True)
class LLMModelConfig(_LLMSection):
    """``model``: the reward model and its optimiser. ``kind=frozen`` reads ``max_seq_length``,
    ``encode_batch_size``, ``hidden`` and ``dropout``; ``kind=finetune`` reads ``max_length``, ``dtype``,
    ``gradient_checkpointing`` and ``eval_batch_size``; both read the rest."""

    SECTION = "model"
    kind: str = rule("frozen", choices=MODEL_KINDS)
    name: str = rule("minilm")
    batch_size: int = rule(64, ge=1)  # upper bound: whole strata are packed into a batch
    epochs: int = rule(1, ge=1)
    min_steps: int = rule(0, ge=0)
    max_steps: Optional[int] = rule(None, ge=1)
    lr: float = rule(1.0e-3, gt=0.0)
    weight_decay: float = rule(0.0, ge=0.0)
    grad_clip: float = rule(0.0, ge=0.0)  # 0 = no clipping
    max_seq_length: int = rule(256, ge=1)
    encode_batch_size: int = rule(64, ge=1)
    hidden: int = rule(128, ge=0)  # 0 = linear head
    dropout: float = rule(0.1, ge=0.0, lt=1.0)
    max_length: int = rule(512, ge=1)
    dtype: Optional[str] = rule(None, check=_is_torch_dtype,
                                allowed="a torch dtype name such as bfloat16, float16 or float32")
    gradient_checkpointing: bool = rule(False)
    eval_batch_size: int = rule(32, ge=1)


@dataclasses.dataclass(frozen=True)
class LLMStrataConfig(_LLMSection):
    """``strata``: which training comparisons may be ranked against each other."""

    SECTION = "strata"
    kind: str = rule("annotator", choices=STRATA_KINDS)  # prompt: UKPConvArg1's topic (debate + stance)
    k: Optional[int] = rule(None, ge=1)  # None: fewest tie-free partitions


@dataclasses.dataclass(frozen=True)
class LLMEvalConfig(_LLMSection):
    """``eval``: extra benchmarks after the test split."""

    SECTION = "eval"
    rewardbench: bool = rule(False)
    rewardbench_path: Optional[str] = rule(None)


def _loss_names() -> tuple[str, ...]:
    return tuple(sorted(LOSS_SPECS))


def _default_cache_dir() -> str:
    return f"{os.environ.get('RLPREF_CACHE', '.rlpref_cache')}/llm"  # as conf/llm/config.yaml


@dataclasses.dataclass(frozen=True)
class LLMRunConfig(_LLMSection):
    """One LLM run: the experiment (``name``, ``loss``, ``strength``, ``shuffle_strength``), run-wide keys
    and the sections. ``loss`` is any name of the loss registry (:data:`rlpref.losses.LOSS_SPECS`)."""

    name: Optional[str] = rule(None)  # experiment name; None: the loss name
    loss: str = rule("rr", choices=_loss_names)
    strength: str = rule("agreement", choices=STRENGTHS)
    shuffle_strength: bool = rule(False)  # rr_perm control: break the key–comparison link
    seed: int = rule(0, ge=0)
    fraction: float = rule(1.0, gt=0.0, le=1.0)
    threads: int = rule(2, ge=1)
    device: str = rule("cpu")
    progress: bool = rule(True)
    save_model: bool = rule(False)
    cache_dir: str = rule(default_factory=_default_cache_dir)
    data: LLMDataConfig = rule(default_factory=LLMDataConfig)
    model: LLMModelConfig = rule(default_factory=LLMModelConfig)
    strata: LLMStrataConfig = rule(default_factory=LLMStrataConfig)
    eval: LLMEvalConfig = rule(default_factory=LLMEvalConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data.source == "ukpconvarg1" and self.strength in UKP_REFUSED_STRENGTHS:
            raise ConfigError(f"llm strength={self.strength}: {UKP_REFUSED_STRENGTHS[self.strength]}; "
                              "use strength=agreement (vote margin) or consensus")

    @property
    def experiment(self) -> str:
        """The experiment's name in results: ``name``, or the loss when unnamed."""
        return self.loss if self.name is None else self.name

    @classmethod
    def from_config(cls, cfg: Any) -> "LLMRunConfig":
        """The typed config of a Hydra ``DictConfig`` (interpolations resolved), a plain mapping or an
        ``LLMRunConfig`` (returned as is). A ``hydra`` node, present when composed with it, is skipped."""
        if isinstance(cfg, cls):
            return cfg
        if isinstance(cfg, DictConfig):  # resolved node by node: a hydra node resolves only inside a run
            cfg = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                   for k, v in cfg.items() if k != "hydra"}
        return build(cls, cfg, ignore=("hydra",))

    def to_dict(self) -> dict:
        """Plain data (for logs and results): the composed config with every default filled in."""
        return dataclasses.asdict(self)
