"""User errors in one line, for every Hydra entry point (``rlpref.run``, ``rlpref.llm.train``, ``rlpref.synthetic``).

A user's mistake (a bad value, an unknown key or group option, a missing file) ends the command with one
line, ``<prog>: error: <key>=<value>: <what is allowed>``, and exit status 2; ``HYDRA_FULL_ERROR=1`` shows
the whole traceback instead. Hydra reports composition errors itself (with a stack for some): the
:func:`one_line_errors` context takes over its reporting for the duration of a command, and
:func:`task_errors` does the same inside the task, before Hydra logs a failed job.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from rlpref.artifacts import CorruptArtifactError
from rlpref.schema import ConfigError

__all__ = ["one_line_errors", "task_errors", "user_error_message"]

#: key -> message for a key a command no longer has (e.g. a setting that moved), or None
Moved = Callable[[str], Optional[str]]


def user_error_message(exc: BaseException, prog: str, moved: Optional[Moved] = None) -> Optional[str]:
    """One line for a user's mistake (None: a bug, whose traceback is worth reading)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, (ConfigError, FileNotFoundError, CorruptArtifactError)):
        return " ".join(str(exc).split())
    if not isinstance(exc, (HydraException, OmegaConfBaseException)):
        return None
    text = str(exc)
    key = re.search(r"Could not (?:override|append to|delete from config) '([^']+)'", text) or \
        re.search(r"Key '([^']+)' (?:is not in struct|not in)", text)
    if key and moved is not None and moved(key.group(1)):
        return moved(key.group(1))
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if missing:
        group, options = missing.groups(), re.findall(r"^\t(\S+)$", text, flags=re.M)
        extra = " (any other Gymnasium env: env=gym env.id=<id>)" if prog == "rlpref.run" and group[0] == "env" else ""
        return f"{group[0]}={group[1]}: no such option; choose one of: {', '.join(options)}{extra}"
    if key and "override" in text:
        return (f"{key.group(1)}: no such key (python -m {prog} --cfg job lists every key; "
                f"+{key.group(1)}=<value> adds a new one)")
    return " ".join(text.split())


def _message(exc: BaseException, prog: str, moved: Optional[Moved]) -> Optional[str]:
    return None if os.environ.get("HYDRA_FULL_ERROR") == "1" else user_error_message(exc, prog, moved)


def _exit_with(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


@contextmanager
def task_errors(prog: str, moved: Optional[Moved] = None) -> Iterator[None]:
    """Inside a Hydra task: a user's mistake exits 2 with one line; anything else propagates."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - a user's mistake gets one line; anything else its traceback
        message = _message(exc, prog, moved)
        if message is None:
            raise
        _exit_with(prog, message)


@contextmanager
def one_line_errors(prog: str, moved: Optional[Moved] = None) -> Iterator[None]:
    """Around a Hydra entry point: composition errors (bad override, unknown key or option) in one line."""
    import hydra._internal.utils as hydra_utils

    original = hydra_utils.run_and_report

    def report(func):
        try:
            return func()
        except Exception as exc:  # noqa: BLE001 - sorted below: user errors get one line, bugs their traceback
            message = _message(exc, prog, moved)
            if message is None:
                return original(_reraise(exc))
            _exit_with(prog, message)

    hydra_utils.run_and_report = report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def _reraise(exc: BaseException):
    def again():
        raise exc
    return again
