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
:func:`build` also rejects unknown keys. A field typed as another section nests it: its sub-mapping is
built (and checked) in turn. Cross-field checks follow in each class's ``__post_init__``. Because every
section is typed and fully defaulted, artefact keys are built from these objects, never from raw
mappings (a default that lives in code is in the key).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, Mapping, Optional, Sequence, Union

__all__ = ["ConfigError", "Section", "build", "describe", "rule"]


class ConfigError(ValueError):
    """A config value of the wrong type or outside its range; the message names key, value and fix."""


def rule(default: Any = dataclasses.MISSING, *, ge: Optional[float] = None, gt: Optional[float] = None,
         le: Optional[float] = None, lt: Optional[float] = None,
         choices: Union[Sequence[Any], Callable[[], Sequence[Any]], None] = None,
         default_factory: Any = dataclasses.MISSING, check: Optional[Callable[[Any], bool]] = None,
         allowed: str = "") -> Any:
    """A dataclass field with its allowed range (``ge``/``gt``/``le``/``lt``) or ``choices``.

    ``choices`` may be a callable, read at each check, so a registry that grows at run time (a loss added
    in a test) is honoured. ``check``: a predicate the value (like a range, each item of a list) must pass,
    described in messages by ``allowed``.
    """
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt), ("check", check)) if v is not None}
    if choices is not None:
        meta["choices"] = choices if callable(choices) else tuple(choices)
    if allowed:
        meta["allowed"] = allowed
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _choices(meta: Mapping[str, Any]) -> tuple:
    """The allowed values now: a callable's are read at each check (see :func:`rule`)."""
    c = meta["choices"]
    return tuple(c() if callable(c) else c)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Section)


def describe(tp: Any, meta: Mapping[str, Any]) -> str:
    """What a field allows, in words: 'an integer >= 1', 'one of: a, b', 'a float in (0, 1]'..."""
    base, optional = _unwrap_optional(tp)
    if "choices" in meta:
        text = "one of: " + ", ".join(str(c) for c in _choices(meta))
    elif "allowed" in meta:
        text = meta["allowed"]
    else:
        noun = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(base)
        if noun is None and typing.get_origin(base) in (tuple, Sequence, list, typing.Sequence):
            noun = "a list of integers"
        if noun is None and _is_section(base):
            noun = "a mapping with keys " + ", ".join(sorted(f.name for f in dataclasses.fields(base)))
        noun = noun or getattr(base, "__name__", str(base))
        num = lambda x: f"{x:g}"  # noqa: E731  (0.0 -> 0, 1e-06 stays short)
        lo = f"> {num(meta['gt'])}" if "gt" in meta else f">= {num(meta['ge'])}" if "ge" in meta else None
        hi = f"< {num(meta['lt'])}" if "lt" in meta else f"<= {num(meta['le'])}" if "le" in meta else None
        text = " ".join(p for p in (noun, lo, "and" if lo and hi else None, hi) if p)
    return text + (" (or null)" if optional else "")


def _coerce(value: Any, tp: Any, int_as_str: bool = False) -> Any:
    """``value`` as type ``tp``, or raise TypeError; bools are never numbers, numbers never bools.
    A mapping where a section is expected is built into it; ``int_as_str``: see ``Section.INT_AS_STR``."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise TypeError
    if _is_section(base):
        if isinstance(value, base):
            return value
        if not isinstance(value, Mapping):
            raise TypeError
        return build(base, value)
    if int_as_str and base is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
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
        return value in _choices(meta)
    if isinstance(value, tuple):
        return all(_in_range(v, meta) for v in value)
    if "check" in meta and not meta["check"](value):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return all((
        "ge" not in meta or value >= meta["ge"], "gt" not in meta or value > meta["gt"],
        "le" not in meta or value <= meta["le"], "lt" not in meta or value < meta["lt"],
    ))


class Section:
    """Base of a typed config section: on construction every field is coerced and checked against its
    rule, so a section built in code is as safe as one read from YAML. ``SECTION`` names it in errors.

    The other class attributes serve a project with several config trees or older, laxer readers:
    ``ROOT`` prefixes every message (``ROOT="llm"``: 'llm model.lr=...', 'unknown llm top-level keys');
    ``NULL_IS_DEFAULT``: in :func:`build`, a null key of a non-optional field takes its default, as a
    ``cfg.get(key) or default`` lookup did; ``INT_AS_STR``: an int where a string is expected is taken as
    its text, since Hydra reads an override ``salt=7`` as the int 7.
    """

    SECTION = ""  # "" = top-level keys
    ROOT = ""
    NULL_IS_DEFAULT = False
    INT_AS_STR = False

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        prefix = _key_prefix(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            allowed = describe(hints[f.name], f.metadata)
            try:
                coerced = _coerce(value, hints[f.name], self.INT_AS_STR)
            except TypeError:
                raise ConfigError(f"{prefix}{f.name}={value!r}: must be {allowed}") from None
            if not _in_range(coerced, f.metadata):
                raise ConfigError(f"{prefix}{f.name}={value!r}: must be {allowed}")
            object.__setattr__(self, f.name, coerced)


def _key_prefix(cls: type) -> str:
    """What precedes a key in messages: 'teacher.', 'llm model.', 'llm ' (a rooted top level) or ''."""
    if cls.SECTION:
        return " ".join(p for p in (cls.ROOT, cls.SECTION) if p) + "."
    return f"{cls.ROOT} " if cls.ROOT else ""


def build(cls: type, mapping: Optional[Mapping[str, Any]], section: Optional[str] = None,
          ignore: Sequence[str] = ()) -> Any:
    """``cls`` (a :class:`Section` dataclass) from ``mapping``; missing keys take their defaults.

    ``ignore``: keys that may appear in the mapping but are not fields (e.g. a Hydra group's ``name``).
    """
    section = " ".join(p for p in (cls.ROOT, section or cls.SECTION or "top-level") if p)
    if mapping is not None and not isinstance(mapping, Mapping):
        raise ConfigError(f"{section}={mapping!r}: must be {describe(cls, {})}")
    mapping = dict(mapping or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names - set(ignore))
    if unknown:
        raise ConfigError(f"unknown {section} keys {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    kwargs = {k: v for k, v in mapping.items() if k in names}
    if cls.NULL_IS_DEFAULT:
        hints = typing.get_type_hints(cls)
        kwargs = {k: v for k, v in kwargs.items() if v is not None or _unwrap_optional(hints[k])[1]}
    return cls(**kwargs)
