"""Optional compiled CPU kernel for the rr loss (``rr_cpu.cpp``), built once at install time.

On CPU the eager rr loss (:class:`rlpref.losses._FastRR`) costs about 1.6–1.75× bt at N = 10k, mostly
per-op dispatch, a Python backward callback and layout copies (scripts/bench_losses.py). The C++ version is one autograd node
whose forward and backward are single passes over the strata, with the same values and gradients.

Building needs a C++ compiler and takes a minute or more, so it never happens on import:
``python -m rlpref.kernels build`` (run by ``make install``) compiles into the cache below, and
:func:`load` only picks up an already built library. Without one, rr falls back to the eager path.
``RLPREF_RR_KERNEL=0`` turns the kernel off; ``RLPREF_KERNEL_DIR`` moves the cache.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch

__all__ = ["build", "clear_cache", "kernel_dir", "load", "load_error", "module_name"]

SOURCE = Path(__file__).with_name("rr_cpu.cpp")


def module_name() -> str:
    """Extension name, unique per source text, so an edited kernel is never confused with an old build."""
    return "rlpref_rr_" + hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]


def kernel_dir() -> Path:
    """Build folder: per torch version and C++ ABI, Python ABI and machine, since the library links against all."""
    root = Path(os.environ.get("RLPREF_KERNEL_DIR") or Path.home() / ".cache" / "rlpref" / "kernels")
    abi = f"cxx11abi{int(torch.compiled_with_cxx11_abi())}"
    tag = f"torch{torch.__version__}-{abi}-{sys.implementation.cache_tag}-{platform.machine()}"
    return root / tag / module_name()


def _built_library() -> Optional[Path]:
    found = sorted(kernel_dir().glob(f"{module_name()}*.so"))
    return found[0] if found else None


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name(), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _disabled() -> bool:
    return os.environ.get("RLPREF_RR_KERNEL", "1").lower() in ("0", "false", "off", "no")


@functools.lru_cache(maxsize=None)
def _load() -> tuple[Optional[ModuleType], str]:
    if _disabled():
        return None, "disabled by RLPREF_RR_KERNEL=0"
    try:
        path = _built_library()
        if path is None:
            return None, "not built: run `python -m rlpref.kernels build`"
        return _import(path), ""
    except Exception as exc:  # never let the optional kernel break rr: the eager path always works
        return None, f"failed to load ({type(exc).__name__}: {exc}); rebuild with `python -m rlpref.kernels build`"


def load() -> Optional[ModuleType]:
    """The built kernel module, or None (not built, disabled, or unloadable: then rr runs eagerly)."""
    return _load()[0]


def load_error() -> str:
    """Why :func:`load` returned None ('' when the kernel is in use)."""
    return _load()[1]


def clear_cache() -> None:
    """Forget the loaded state, e.g. after changing RLPREF_RR_KERNEL or building."""
    _load.cache_clear()


def build(verbose: bool = False) -> Path:
    """Compile the kernel into :func:`kernel_dir`; an existing build is reused only if it imports."""
    from torch.utils.cpp_extension import load as cpp_load

    existing = _built_library()
    if existing is not None:
        try:
            _import(existing)
            return existing
        except Exception:  # a truncated link or foreign ABI: build again over it
            existing.unlink()
    out = kernel_dir()
    out.mkdir(parents=True, exist_ok=True)
    cpp_load(name=module_name(), sources=[str(SOURCE)], build_directory=str(out), extra_cflags=["-O3"],
             verbose=verbose)
    clear_cache()
    path = _built_library()
    if path is None:
        raise RuntimeError(f"the kernel build finished but left no library in {out}")
    return path
