"""The scripts under scripts/ are run by hand, not by the suite, so a renamed rlpref function breaks them
silently (bench_throughput.py and bench_reward_fit.py still imported the old ``pin_threads``). Every
``from rlpref... import name`` in them, at any depth, must name something that exists; imports inside a
``try`` whose ``except ImportError`` is the fallback for older checkouts are exempt."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


def _fallback_imports(tree: ast.AST) -> set[int]:
    """ids of ImportFrom nodes in ``except ImportError`` handlers (deliberate fallbacks)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                names = ast.unparse(handler.type) if handler.type is not None else ""
                if "ImportError" in names or "ModuleNotFoundError" in names:
                    out |= {id(n) for n in ast.walk(handler) if isinstance(n, ast.ImportFrom)}
    return out


def _rlpref_imports(path: Path) -> list[tuple[str, str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _fallback_imports(tree)
    return [(node.module, alias.name, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and id(node) not in skip and node.module
            and (node.module == "rlpref" or node.module.startswith("rlpref."))
            for alias in node.names]


def test_the_scan_sees_imports_at_every_depth():
    found = {(m, n) for path in SCRIPTS for m, n, _ in _rlpref_imports(path)}
    assert ("rlpref.runtime", "configure_compute") in found  # bench_reward_fit imports it inside functions
    assert ("rlpref.runtime", "pin_threads") not in found  # its fallback for old checkouts is exempt


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_every_rlpref_name_a_script_imports_exists(path):
    missing = []
    for module, name, line in _rlpref_imports(path):
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            try:  # a submodule imported by name (from rlpref.control import pipeline)
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{path.name}:{line}: {module}.{name}")
    assert not missing, f"scripts import names rlpref no longer has: {missing}"
