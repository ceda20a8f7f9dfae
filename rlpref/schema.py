"""Typed config sections: each key's type and allowed range declared once, checked before any work.

A config section is a frozen dataclass whose fields carry their rule::

    @dataclass(frozen=True)
    class SegmentsConfig(Section):
        SECTION = "segments"
        length: int = rule(50, ge=1)
        oversample: float = rule(1.5, ge=1.0)

    SegmentsConfig.from_mapping(cfg["segments"], "segments")  # -> typed, fully defaulted

:class:`Section` coerces what is unambiguous on construction (an int where a float is expected, a list
where a tuple is) and raises :class:`ConfigError` naming the dotted key, the value and what is allowed;
:func:`build` also rejects unknown keys. Cross-field checks follow in each class's ``__post_init__``. Because every section is typed and fully
defaulted, artefact keys are built from these objects, never from raw mappings (a default that lives in
code is in the key).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Mapping, Optional, Sequence

__all__ = ["ConfigError", "Section", "build", "describe", "rule"]


class ConfigError(ValueError):
    """A config value of the wrong type or outside its range; the message names key, value and fix."""


def rule(default: Any = dataclasses.MISSING, *, ge: Optional[float] = None, gt: Optional[float] = None,
         le: Optional[float] = None, lt: Optional[float] = None, choices: Optional[Sequence[Any]] = None,
         default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its allowed range (``ge``/``gt``/``le``/``lt``) or ``choices``."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def describe(tp: Any, meta: Mapping[str, Any]) -> str:
    """What a field allows, in words: 'an integer >= 1', 'one of: a, b', 'a float in (0, 1]'..."""
    base, optional = _unwrap_optional(tp)
    if "choices" in meta:
        text = "one of: " + ", ".join(str(c) for c in meta["choices"])
    else:
        noun = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(base)
        if noun is None and typing.get_origin(base) in (tuple, Sequence, list, typing.Sequence):
            noun = "a list of integers"
        noun = noun or getattr(base, "__name__", str(base))
        num = lambda x: f"{x:g}"  # noqa: E731  (0.0 -> 0, 1e-06 stays short)
        lo = f"> {num(meta['gt'])}" if "gt" in meta else f">= {num(meta['ge'])}" if "ge" in meta else None
        hi = f"< {num(meta['lt'])}" if "lt" in meta else f"<= {num(meta['le'])}" if "le" in meta else None
        text = " ".join(p for p in (noun, lo, "and" if lo and hi else None, hi) if p)
    return text + (" (or null)" if optional else "")


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or raise TypeError; bools are never numbers, numbers never bools."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise TypeError
    if base is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    if typing.get_origin(base) in (tuple, list, Sequence, typing.Sequence) or base in (tuple, list):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError
        inner = (typing.get_args(base) or (int,))[0]
        return tuple(_coerce(v, inner) for v in value)
    return value  # free-form (dicts): the stage that reads it checks it


def _in_range(value: Any, meta: Mapping[str, Any]) -> bool:
    if value is None:
        return True
    if "choices" in meta:
        return value in meta["choices"]
    if isinstance(value, tuple):
        return all(_in_range(v, meta) for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return all((
        "ge" not in meta or value >= meta["ge"], "gt" not in meta or value > meta["gt"],
        "le" not in meta or value <= meta["le"], "lt" not in meta or value < meta["lt"],
    ))


class Section:
    """Base of a typed config section: on construction every field is coerced and checked against its
    rule, so a section built in code is as safe as one read from YAML. ``SECTION`` names it in errors."""

    SECTION = ""  # "" = top-level keys

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        prefix = f"{self.SECTION}." if self.SECTION else ""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            allowed = describe(hints[f.name], f.metadata)
            try:
                coerced = _coerce(value, hints[f.name])
            except TypeError:
                raise ConfigError(f"{prefix}{f.name}={value!r}: must be {allowed}") from None
            if not _in_range(coerced, f.metadata):
                raise ConfigError(f"{prefix}{f.name}={value!r}: must be {allowed}")
            object.__setattr__(self, f.name, coerced)


def build(cls: type, mapping: Optional[Mapping[str, Any]], section: Optional[str] = None,
          ignore: Sequence[str] = ()) -> Any:
    """``cls`` (a :class:`Section` dataclass) from ``mapping``; missing keys take their defaults.

    ``ignore``: keys that may appear in the mapping but are not fields (e.g. a Hydra group's ``name``).
    """
    mapping = dict(mapping or {})
    section = section or cls.SECTION or "top-level"
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names - set(ignore))
    if unknown:
        raise ConfigError(f"unknown {section} keys {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    return cls(**{k: v for k, v in mapping.items() if k in names})
