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


@pytest.fixture
def bench(load_script):
    """scripts/bench_reward_fit.py as a module."""
    return load_script("bench_reward_fit")


def test_bench_reward_fit_pairs_states_paired_differences_with_the_t_interval(tmp_path, bench):
    import json

    import numpy as np

    deltas = [-0.004, 0.0, -0.002]  # other - base validation accuracy on seeds 0-2
    fits = []
    for seed, d in enumerate(deltas):
        base = {"label": "base", "loss": "bt", "seed": seed, "val_accuracy": 0.94, "spearman": 0.99, "cpu_seconds": 200.0}
        fits += [base, {**base, "label": "new", "val_accuracy": 0.94 + d, "cpu_seconds": 100.0 + 20 * seed}]
    (tmp_path / "fits.json").write_text(json.dumps({"fits": fits}))
    row = bench.pairs(tmp_path, ["base"], "new", limit=110).splitlines()[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    half = 4.302653 * np.std(np.array(deltas) * 100, ddof=1) / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert cells[:5] == ["bt", "3 (0–2)", "100–140", "200–200", "1 of 3"]
    assert cells[7] == f"{-0.2:+.2f} [{-0.2 - half:+.2f}, {-0.2 + half:+.2f}]"
    assert cells[8] == "+0.0000 [+0.0000, +0.0000]"


def test_bench_reward_fit_replay_stops_where_the_fit_did_without_a_threshold(tmp_path, bench):
    """The replay's threshold-0 rule is the fit's own: driven with the same scripted validation losses, the
    real early stopping (reward_net._fit) and the replay stop at the same epoch and keep the same loss."""
    import json

    import numpy as np
    import torch

    from rlpref.control.reward_net import RewardTrainConfig, _fit

    rng = np.random.default_rng(0)
    for case in range(40):
        patience = int(rng.integers(1, 7))
        # plateaus, gains just under and over the rule's 1e-6, and real gains
        steps = rng.choice([0.0, -5e-7, -2e-6, -0.01, 0.02], size=40, p=[0.3, 0.15, 0.15, 0.3, 0.1])
        losses = list(1.0 + np.cumsum(steps))
        script = iter(losses)
        cfg = RewardTrainConfig(max_epochs=len(losses), patience=patience)
        history, best = _fit(torch.nn.Linear(1, 1), cfg, "bt", lambda: None, lambda pairs, opt: 0.0,
                             lambda: next(script), float("inf"), None)
        stop, kept, stopped = bench._replay_stop(losses, 0.0, patience)
        assert (stop, kept, stopped) == (len(history), best, len(history) < len(losses)), case
    # 1.0 at epoch 2, then gains of 0.1 % each (0.7 % in all): a 1 % threshold stops 5 epochs after epoch 2,
    # keeping the best loss seen by then
    losses = [3.0, 2.0, 1.0] + [0.999 ** k for k in range(1, 8)]
    assert bench._replay_stop(losses, 0.01, 5) == (8, pytest.approx(0.999 ** 5), True)
    (tmp_path / "fits").mkdir()
    fit = {"history": [{"val_loss": v} for v in losses], "cpu_seconds": 100.0, "val_loss": 0.999 ** 7,
           "reward_model": {"patience": 5, "max_epochs": 10}}  # ran to its last epoch
    (tmp_path / "fits" / "x-rr-seed0.json").write_text(json.dumps(fit))
    (tmp_path / "fits" / "x2-rr-seed0.json").write_text(json.dumps(fit))  # another label, not read
    table = bench.replay(tmp_path, "x", [0.01]).splitlines()
    assert len(table) == 3 and table[2].startswith("| x-rr-seed0 | 10 | 100 | 0.9930 | 8 / 80 / 0.9950 |")
    (tmp_path / "fits" / "x-rr-seed0.json").write_text(json.dumps({**fit, "reward_model": {"patience": 5}}))
    with pytest.raises(SystemExit, match="ran 10 of 100 epochs"):  # stopped early, yet no rule stop in its losses
        bench.replay(tmp_path, "x", [0.01])


def test_reward_level_reports_each_batch_mean_of_the_learned_and_true_reward(tmp_path, load_script):
    """reward_level.py scores the run's own segments with its r_θ: a model serving r = 2·r_raw - 1 on two
    batches gives per-batch means that follow from the known affine map."""
    import json

    import numpy as np
    import torch

    from rlpref.artifacts import save_npz
    from rlpref.control.reward_net import RewardModel, save_reward_model

    level = load_script("reward_level")
    rng = np.random.default_rng(0)
    n, length, obs_dim = 6, 4, 3
    seg = {"obs": rng.normal(size=(n, length, obs_dim)).astype(np.float32),
           "acts": rng.normal(size=(n, length, 2)).astype(np.float32),
           "next_obs": rng.normal(size=(n, length, obs_dim)).astype(np.float32),
           "rewards": rng.normal(size=(n, length)).astype(np.float32),
           "batch": np.array([0, 0, 0, 1, 1, 1])}
    save_npz(tmp_path / "cache" / "segments" / "k1" / "segments.npz", seg)
    model = RewardModel(obs_dim, 2, hidden=[8])
    with torch.no_grad():
        model.out_scale.fill_(2.0)
        model.out_shift.fill_(-1.0)
    run = tmp_path / "run"
    save_reward_model(model, run)
    (run / "results.json").write_text(json.dumps({"artifacts": {"segments": "k1"}}))
    raw = model.member_rewards(model.features(torch.as_tensor(seg["obs"]), torch.as_tensor(seg["acts"]))).mean(0)
    expected = (2.0 * raw - 1.0).detach().numpy()
    got = level.batch_levels(run, tmp_path / "cache")
    assert [b for b, _, _ in got] == [0, 1]
    for b, learned, true in got:
        mask = seg["batch"] == b
        assert learned == pytest.approx(float(expected[mask].mean()), abs=1e-5)
        assert true == pytest.approx(float(seg["rewards"][mask].mean()), abs=1e-6)
    with pytest.raises(SystemExit, match="--cache"):
        level.batch_levels(run, tmp_path / "elsewhere")
    # the same r_θ as a cached artefact, its segments two manifests up (reward model <- feedback <- segments)
    cached = tmp_path / "cache" / "reward_model" / "r1"
    save_reward_model(model, cached)
    (cached / "manifest.json").write_text(json.dumps({"stage": "reward_model", "inputs": ["f1"]}))
    (tmp_path / "cache" / "feedback" / "f1").mkdir(parents=True)
    (tmp_path / "cache" / "feedback" / "f1" / "manifest.json").write_text(json.dumps({"inputs": ["k1"]}))
    assert level.batch_levels(cached, tmp_path / "cache") == got
    with pytest.raises(SystemExit, match="neither a finished run"):
        level.batch_levels(tmp_path / "nothing", tmp_path / "cache")
