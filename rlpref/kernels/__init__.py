"""Optional compiled CPU kernel for the rr loss (``rr_cpu.cpp``), built once at install time.

On CPU the eager rr loss (:class:`rlpref.losses._FastRR`) costs about 1.6–1.75× bt at N = 10k, mostly
per-op dispatch, a Python backward callback and layout copies. The C++ version is one autograd node
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
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch

__all__ = ["build", "kernel_dir", "load", "module_name"]

SOURCE = Path(__file__).with_name("rr_cpu.cpp")


def module_name() -> str:
    """Extension name, unique per source text, so an edited kernel is never confused with an old build."""
    return "rlpref_rr_" + hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]


def kernel_dir() -> Path:
    """Build folder: per torch version and Python, since the library links against both."""
    root = Path(os.environ.get("RLPREF_KERNEL_DIR") or Path.home() / ".cache" / "rlpref" / "kernels")
    tag = f"torch{torch.__version__}-py{sys.version_info.major}{sys.version_info.minor}"
    return root / tag / module_name()


def _built_library() -> Optional[Path]:
    found = sorted(kernel_dir().glob(f"{module_name()}*.so"))
    return found[0] if found else None


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name(), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@functools.lru_cache(maxsize=None)
def load() -> Optional[ModuleType]:
    """The built kernel module, or None (not built, disabled, or unloadable: then rr runs eagerly)."""
    if os.environ.get("RLPREF_RR_KERNEL", "1").lower() in ("0", "false", "off", "no"):
        return None
    path = _built_library()
    if path is None:
        return None
    try:
        return _import(path)
    except (ImportError, OSError):  # e.g. built against another libtorch ABI: rebuild with `build`
        return None


def build(verbose: bool = False) -> Path:
    """Compile the kernel into :func:`kernel_dir` (a no-op when an up-to-date build exists)."""
    from torch.utils.cpp_extension import load as cpp_load

    existing = _built_library()
    if existing is not None:
        return existing
    out = kernel_dir()
    out.mkdir(parents=True, exist_ok=True)
    cpp_load(name=module_name(), sources=[str(SOURCE)], build_directory=str(out), extra_cflags=["-O3"],
             verbose=verbose)
    load.cache_clear()
    path = _built_library()
    if path is None:
        raise RuntimeError(f"the kernel build finished but left no library in {out}")
    return path
