"""Typed config of the LLM track: every key's type, default and allowed range, declared once.

``conf/llm/config.yaml`` with its ``experiment`` and ``model`` groups is read once, by
:meth:`LLMRunConfig.from_config`, into frozen dataclasses that are checked before any work: an
unknown key, a value of the wrong type or one out of range fails at once with the dotted key, the
value and what is allowed (``llm model.lr must be a float > 0, got 'abc'``), not as a bare
``float()`` error deep inside training. The trainer then reads typed fields only.

Defaults are the fallbacks the trainer has always used for a missing (or null) key, so a config
that ran before runs the same. Where a key had no fallback, the default is the value of the default
composition (``experiment=rr_agree``, ``model=frozen``). Four model keys have a fallback that the
model groups override: ``epochs`` (1), ``min_steps`` (0), ``weight_decay`` (0.0) and ``grad_clip``
(0.0) apply only to hand-built configs; ``conf/llm/model/*.yaml`` set them for every Hydra run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import typing
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence, Union

import torch
from omegaconf import DictConfig, OmegaConf

from rlpref.llm.multipref import ANNOTATOR_POOLS
from rlpref.llm.strength import STRENGTHS
from rlpref.losses import LOSS_SPECS

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
]

DATA_SOURCES = ("auto", "file", "hub", "simulated")
MODEL_KINDS = ("frozen", "finetune")
STRATA_KINDS = ("annotator", "global")

Choices = Union[Sequence[str], Callable[[], Sequence[str]]]


class LLMConfigError(ValueError):
    """An LLM config key that is unknown, of the wrong type or out of range; the message names it."""


def _rule(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, ge: Optional[float] = None,
          gt: Optional[float] = None, le: Optional[float] = None, lt: Optional[float] = None,
          choices: Optional[Choices] = None, check: Optional[Callable[[Any], bool]] = None,
          allowed: str = "") -> Any:
    """A dataclass field with what it allows: a range, ``choices`` (a callable: read when checked) or
    a ``check`` predicate described by ``allowed``."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, check=check).items() if v is not None}
    if allowed:
        meta["allowed"] = allowed
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _choices(meta: Mapping[str, Any]) -> Optional[tuple]:
    c = meta.get("choices")
    return tuple(c() if callable(c) else c) if c is not None else None


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _describe(tp: Any, meta: Mapping[str, Any]) -> str:
    """What a field allows, in words: 'an integer >= 1', 'a float in (0, 1]', 'one of: a, b'."""
    base, optional = _unwrap_optional(tp)
    choices = _choices(meta)
    if choices is not None:
        text = "one of: " + ", ".join(map(str, choices))
    elif "allowed" in meta:
        text = meta["allowed"]
    else:
        text = {int: "an integer", float: "a float", bool: "true or false", str: "a string"}[base]
        lo = ("(", meta["gt"]) if "gt" in meta else ("[", meta["ge"]) if "ge" in meta else None
        hi = (")", meta["lt"]) if "lt" in meta else ("]", meta["le"]) if "le" in meta else None
        if lo and hi:
            text += f" in {lo[0]}{_fmt(lo[1])}, {_fmt(hi[1])}{hi[0]}"
        elif lo:
            text += f" {'>' if lo[0] == '(' else '>='} {_fmt(lo[1])}"
        elif hi:
            text += f" {'<' if hi[0] == ')' else '<='} {_fmt(hi[1])}"
    return text + (" (or null)" if optional else "")


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` or TypeError: ints pass as floats, integral floats as ints, ints as free
    text (a Hydra override ``data.split_salt=7``); bools are never numbers and numbers never bools."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise TypeError
    if isinstance(value, bool) != (base is bool):
        raise TypeError
    if base is bool:
        return value
    if base is int:
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real) and float(value).is_integer():
            return int(value)
        raise TypeError
    if base is float:
        if isinstance(value, numbers.Real):
            return float(value)
        raise TypeError
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return str(value)
    raise TypeError


def _allows(value: Any, meta: Mapping[str, Any]) -> bool:
    if value is None:
        return True
    choices = _choices(meta)
    if choices is not None:
        return value in choices
    if "check" in meta:
        return bool(meta["check"](value))
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return (("ge" not in meta or value >= meta["ge"]) and ("gt" not in meta or value > meta["gt"])
            and ("le" not in meta or value <= meta["le"]) and ("lt" not in meta or value < meta["lt"]))


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, _Section)


class _Section:
    """Base of the config dataclasses: checks and coerces every field on construction, builds from a mapping."""

    _section: ClassVar[str] = ""  # dotted position in the config ("" = top level)

    def _key(self, name: str) -> str:
        return f"{self._section}.{name}" if self._section else name

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            tp, value = hints[f.name], getattr(self, f.name)
            if _is_section(tp):
                if not isinstance(value, tp):
                    raise LLMConfigError(f"llm {self._key(f.name)} must be a {tp.__name__}, got {value!r}")
                continue
            allowed = _describe(tp, f.metadata)
            try:
                coerced = _coerce(value, tp)
            except TypeError:
                raise LLMConfigError(f"llm {self._key(f.name)} must be {allowed}, got {value!r}") from None
            if not _allows(coerced, f.metadata):
                raise LLMConfigError(f"llm {self._key(f.name)} must be {allowed}, got {value!r}")
            object.__setattr__(self, f.name, coerced)

    @classmethod
    def from_mapping(cls, mapping: Optional[Mapping[str, Any]], ignore: Sequence[str] = ()) -> Any:
        """Build from plain data: unknown keys fail, a null key of a non-optional field takes its default
        (as the trainer's lookups always did), a nested section is built from its sub-mapping."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        where = cls._section or "the top level"
        if mapping is None:
            mapping = {}
        if not isinstance(mapping, Mapping):
            raise LLMConfigError(f"llm {cls._section or 'config'} must be a mapping with keys "
                                 f"{', '.join(sorted(fields))}, got {mapping!r}")
        unknown = sorted(str(k) for k in mapping if k not in fields and k not in ignore)
        if unknown:
            dotted = ", ".join(f"{cls._section}.{k}" if cls._section else k for k in unknown)
            raise LLMConfigError(f"llm config has unknown key(s) {dotted}; allowed at {where}: {', '.join(sorted(fields))}")
        hints = _hints(cls)
        kwargs = {}
        for name, value in mapping.items():
            if name not in fields:
                continue
            tp = hints[name]
            if _is_section(tp):
                kwargs[name] = tp.from_mapping(value)
            elif value is not None or _unwrap_optional(tp)[1]:
                kwargs[name] = value
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class LLMSimulatedConfig(_Section):
    """``data.simulated``: the offline stand-in (:func:`rlpref.llm.simulated.simulated_dataset`)."""

    _section: ClassVar[str] = "data.simulated"
    n_comparisons: int = _rule(5000, ge=1)
    n_normal: int = _rule(16, ge=2)  # each comparison gets two annotations from distinct annotators
    n_expert: int = _rule(8, ge=2)
    seed: int = _rule(0, ge=0)
    max_doc_items: int = _rule(600, ge=0)


@dataclasses.dataclass(frozen=True)
class LLMDataConfig(_Section):
    """``data``: where comparisons come from and how they are split."""

    _section: ClassVar[str] = "data"
    source: str = _rule("auto", choices=DATA_SOURCES)
    path: Optional[str] = _rule(None)
    hub_id: str = _rule("allenai/multipref")
    hub_config: str = _rule("default")
    annotators: str = _rule("all", choices=ANNOTATOR_POOLS)
    test_fraction: float = _rule(0.2, gt=0.0, lt=1.0)
    split_salt: str = _rule("rlpref-llm")
    simulated: LLMSimulatedConfig = _rule(factory=LLMSimulatedConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source == "file" and not self.path:
            raise LLMConfigError("llm data.source=file needs data.path=<MultiPref .jsonl/.json/.parquet file>")


def _is_torch_dtype(name: str) -> bool:
    return isinstance(getattr(torch, name, None), torch.dtype)


@dataclasses.dataclass(frozen=True)
class LLMModelConfig(_Section):
    """``model``: the reward model and its optimiser. ``kind=frozen`` reads ``max_seq_length``,
    ``encode_batch_size``, ``hidden`` and ``dropout``; ``kind=finetune`` reads ``max_length``, ``dtype``,
    ``gradient_checkpointing`` and ``eval_batch_size``; both read the rest."""

    _section: ClassVar[str] = "model"
    kind: str = _rule("frozen", choices=MODEL_KINDS)
    name: str = _rule("minilm")
    batch_size: int = _rule(64, ge=1)  # upper bound: whole strata are packed into a batch
    epochs: int = _rule(1, ge=1)
    min_steps: int = _rule(0, ge=0)
    max_steps: Optional[int] = _rule(None, ge=1)
    lr: float = _rule(1.0e-3, gt=0.0)
    weight_decay: float = _rule(0.0, ge=0.0)
    grad_clip: float = _rule(0.0, ge=0.0)  # 0 = no clipping
    max_seq_length: int = _rule(256, ge=1)
    encode_batch_size: int = _rule(64, ge=1)
    hidden: int = _rule(128, ge=0)  # 0 = linear head
    dropout: float = _rule(0.1, ge=0.0, lt=1.0)
    max_length: int = _rule(512, ge=1)
    dtype: Optional[str] = _rule(None, check=_is_torch_dtype, allowed="a torch dtype name such as bfloat16, float16 or float32")
    gradient_checkpointing: bool = _rule(False)
    eval_batch_size: int = _rule(32, ge=1)


@dataclasses.dataclass(frozen=True)
class LLMStrataConfig(_Section):
    """``strata``: which training comparisons may be ranked against each other."""

    _section: ClassVar[str] = "strata"
    kind: str = _rule("annotator", choices=STRATA_KINDS)
    k: Optional[int] = _rule(None, ge=1)  # None: fewest tie-free partitions


@dataclasses.dataclass(frozen=True)
class LLMEvalConfig(_Section):
    """``eval``: extra benchmarks after the test split."""

    _section: ClassVar[str] = "eval"
    rewardbench: bool = _rule(False)
    rewardbench_path: Optional[str] = _rule(None)


def _loss_names() -> tuple[str, ...]:
    return tuple(sorted(LOSS_SPECS))


def _default_cache_dir() -> str:
    return f"{os.environ.get('RLPREF_CACHE', '.rlpref_cache')}/llm"  # as conf/llm/config.yaml


@dataclasses.dataclass(frozen=True)
class LLMRunConfig(_Section):
    """One LLM run: the experiment (``name``, ``loss``, ``strength``, ``shuffle_strength``), run-wide keys
    and the sections. ``loss`` is any name of the loss registry (:data:`rlpref.losses.LOSS_SPECS`)."""

    name: Optional[str] = _rule(None)  # experiment name; None: the loss name
    loss: str = _rule("rr", choices=_loss_names)
    strength: str = _rule("agreement", choices=STRENGTHS)
    shuffle_strength: bool = _rule(False)  # rr_perm control: break the key–comparison link
    seed: int = _rule(0, ge=0)
    fraction: float = _rule(1.0, gt=0.0, le=1.0)
    threads: int = _rule(2, ge=1)
    device: str = _rule("cpu")
    progress: bool = _rule(True)
    save_model: bool = _rule(False)
    cache_dir: str = _rule(factory=_default_cache_dir)
    data: LLMDataConfig = _rule(factory=LLMDataConfig)
    model: LLMModelConfig = _rule(factory=LLMModelConfig)
    strata: LLMStrataConfig = _rule(factory=LLMStrataConfig)
    eval: LLMEvalConfig = _rule(factory=LLMEvalConfig)

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
        return cls.from_mapping(cfg, ignore=("hydra",))

    def to_dict(self) -> dict:
        """Plain data (for logs and results): the composed config with every default filled in."""
        return dataclasses.asdict(self)
