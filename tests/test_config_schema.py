"""The control config's typed schema and its artefact keys, walked key by key.

Two tables are the specification: which values each numeric key rejects, and which stages' artefact
keys each config key moves. Both tests first check that the table covers every key of the composed
config, so a new key cannot slip in unchecked.
"""

from __future__ import annotations

import json

import pytest

from rlpref.control.pipeline import validate
from rlpref.schema import ConfigError
from rlpref.runtime import bf16_native

STAGES = ("source", "segments", "feedback", "reward_model", "agent")  # protocol=offline's
ALL = set(STAGES)
FREE_FORM = ("env.hyperparams.", "agent.overrides", "logger.", "sweep", "hydra.")  # checked by SB3 / the logger

# key -> values that must be rejected before any work (wrong sign, zero where invalid, out of range)
INVALID = {
    "seed": [-1], "torch_threads": [0],
    "env.max_episode_steps": [0], "env.n_envs": [0], "env.steps_scale": [0, -1.0],
    "teacher.sigma": [-0.1], "teacher.near_tie": [-0.1], "teacher.beta": [0, -1.0],
    "teacher.myopic_gamma": [0, 1.5], "teacher.eps_mistake": [-0.1, 0.6], "teacher.skip_threshold": [-0.1],
    "teacher.equal_threshold": [-0.1],
    "budget.source_steps": [0], "budget.n_checkpoints": [0], "budget.n_feedback": [1, 0], "budget.agent_steps": [0],
    "budget.eval_every": [0], "budget.eval_episodes": [0],
    "strata.k": [0],
    "render.episodes": [0], "render.max_steps": [0], "render.width": [0], "render.height": [0], "render.seed": [-1],
    "segments.length": [0, 201], "segments.oversample": [0.5], "segments.n_envs": [0],
    "reward_model.hidden": [[0], [64, -1]], "reward_model.ensemble": [0], "reward_model.lr": [0, -1e-3],
    "reward_model.weight_decay": [-0.1], "reward_model.batch_size": [0], "reward_model.max_epochs": [0],
    "reward_model.patience": [0], "reward_model.val_fraction": [1.5, 1.0, -0.1],
    "reward_model.label_smoothing": [-0.1, 0.5, 0.1],  # 0.1: rr takes no label smoothing
    "reward_model.precision": ["fp16"],
    "query.pool": [0], "query.chunks": [1], "query.ridge": [0, -1.0],
}
# the protocols' own keys (protocol=offline has none): protocol -> key -> rejected values
ITERATION_INVALID = {"protocol.iteration.n_envs": [0], "protocol.iteration.action_noise": [-0.1],
                     "protocol.iteration.refit_epochs": [0, 1.5], "protocol.iteration.refit_replay": [-1],
                     "protocol.iteration.pairing": ["both"], "protocol.iteration.scale": ["local"],
                     "protocol.iteration.refit": ["always"]}
PROTOCOL_INVALID = {
    "online": {"protocol.iterations": [1, 2.5], "protocol.initial_fraction": [0, 1.0],
               "protocol.query_schedule": ["linear"], **ITERATION_INVALID},
    "offline_rounds": {"protocol.rounds": [0], "protocol.per_round": [1, 2000], "protocol.timing": ["late"],
                       **ITERATION_INVALID},
}

# key -> (a valid other value, the stages whose own key it moves) under protocol=offline, where each stage
# reads only its own sections ("error": the value is refused).
MOVES = {
    "seed": (1, ALL), "reward": ("oracle", {"agent"}), "video": (True, set()), "torch_threads": (2, set()),
    "cache_dir": ("/tmp/elsewhere", set()), "reward_norm": ("step", {"agent"}),
    "env.id": ("Swimmer-v5", "error"),  # the file's hyperparameters are Pendulum-v1's: env=gym is the route
    "env.tuned_for": ("null", set()), "env.max_episode_steps": (100, {"source", "segments", "agent"}),
    "env.discrete": (True, "error"), "env.algo": ("ppo", {"source", "segments", "feedback", "agent"}),
    "env.n_envs": (2, {"source", "segments", "agent"}), "env.steps_scale": (0.5, {"source", "agent"}),
    "env.normalize.obs": (True, {"source", "segments", "agent"}),
    "env.normalize.reward": (True, {"source", "segments", "agent"}),
    "loss.name": ("bt", {"reward_model", "agent"}), "agent.name": ("auto", set()),
    "teacher.name": ("other", set()),
    **{f"teacher.{k}": (v, {"feedback"}) for k, v in (
        ("sigma", 0.25), ("noise", "relative"), ("strength", "noisy"), ("pairing", "within_batch"), ("near_tie", 0.0),
        ("beta", 2.0), ("myopic_gamma", 0.9), ("eps_mistake", 0.1), ("skip_threshold", 0.1),
        ("equal_threshold", 0.1), ("scale", "scope"))},
    "budget.name": ("other", set()), "budget.source_steps": (1000, {"source"}), "budget.n_checkpoints": (5, {"source", "segments"}),
    "budget.n_feedback": (500, {"segments", "feedback"}),
    **{f"budget.{k}": (v, {"agent"}) for k, v in (("agent_steps", 1000), ("eval_every", 500), ("eval_episodes", 2))},
    "strata.name": ("other", set()), "strata.kind": ("global", {"reward_model", "agent"}),
    "strata.k": (4, set()),  # by_group ignores k
    "logger.name": ("wandb", set()),
    **{f"render.{k}": (v, set()) for k, v in (("episodes", 2), ("max_steps", 10), ("width", 64), ("height", 64),
                                              ("seed", 1))},
    **{f"segments.{k}": (v, {"segments"}) for k, v in (("length", 25), ("oversample", 2.0), ("n_envs", 4),
                                                       ("deterministic", False))},
    **{f"reward_model.{k}": (v, {"reward_model", "agent"}) for k, v in (
        ("hidden", [64, 64]), ("use_next_obs", True), ("use_actions", True), ("ensemble", 3), ("lr", 1e-3),
        ("weight_decay", 1e-4), ("batch_size", 32), ("max_epochs", 10), ("patience", 2), ("val_fraction", 0.2))},
    "reward_model.label_smoothing": (0.1, "error"),  # rr takes none
    "reward_model.precision": ("bf16", {"reward_model", "agent"} if bf16_native() else "error"),  # refused if emulated
    "protocol.name": ("online", {"first_iteration", "agent"}),  # a different chain: no source stage
    "query.name": ("dopt", {"feedback"}),  # the offline chunks select
    **{f"query.{k}": (v, set()) for k, v in (("pool", 5), ("chunks", 3), ("ridge", 0.01))},  # unread under random
}
# Under the protocols with rounds, the agent stage labels and refits: what the rounds read keys it too.
ROUND_MOVES = {
    "online": {"teacher.sigma": (0.25, {"first_iteration", "agent"}), "segments.length": (25, {"first_iteration", "agent"}),
               "segments.n_envs": (4, set()), "query.name": ("dopt", {"agent"}), "query.pool": (5, set()),
               "protocol.iterations": (5, {"first_iteration", "agent"}), "protocol.initial_fraction": (0.2, {"first_iteration", "agent"}),
               "protocol.query_schedule": ("constant", {"first_iteration", "agent"}),
               "protocol.iteration.n_envs": (4, {"first_iteration", "agent"}),
               "protocol.iteration.refit": ("gated", {"agent"}), "protocol.iteration.pairing": ("mixed", {"agent"}),
               "reward_model.lr": (1e-3, {"agent"}), "budget.n_feedback": (500, {"first_iteration", "agent"})},
    "offline_rounds": {"teacher.sigma": (0.25, {"feedback", "agent"}), "segments.length": (25, {"segments", "agent"}),
                       "query.name": ("dopt", {"feedback", "agent"}), "protocol.rounds": (3, {"segments", "feedback", "agent"}),
                       "protocol.per_round": (20, {"segments", "feedback", "agent"}),
                       "protocol.timing": ("even", {"agent"}), "protocol.iteration.keep_level": (True, {"agent"}),
                       "budget.n_feedback": (2000, {"segments", "feedback"})},  # the offline part only
}


def _leaves(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not path.startswith(FREE_FORM):
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def _set(cfg: dict, dotted: str, value) -> dict:
    out = json.loads(json.dumps(cfg))
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return out


@pytest.fixture(scope="module")
def pendulum_cfg(compose_config):
    """The default config on Pendulum-v1 (SAC: the PPO hyperparameters are ignored), resolved."""
    return compose_config(["env=Pendulum-v1", "protocol=offline"])


def test_tables_cover_every_key(pendulum_cfg):
    leaves = dict(_leaves(pendulum_cfg))
    numeric = {k for k, v in leaves.items() if not k.startswith(FREE_FORM) and not isinstance(v, (bool, str))
               and (v is None or isinstance(v, (int, float, list)))}
    assert numeric <= set(INVALID), f"numeric keys without a rejection row: {sorted(numeric - set(INVALID))}"
    assert set(INVALID) <= set(leaves)
    walked = {k for k in leaves if not k.startswith(FREE_FORM)} | {"env.normalize.obs", "env.normalize.reward"}
    assert walked - {"sweep"} <= set(MOVES), f"keys the key walk misses: {sorted(walked - set(MOVES))}"


@pytest.mark.parametrize("key", sorted(INVALID))
def test_every_numeric_key_rejects_bad_values_naming_the_key(pendulum_cfg, key):
    for bad in ["abc", *INVALID[key]]:
        with pytest.raises(ValueError) as err:
            validate(_set(pendulum_cfg, key, bad))
        msg = str(err.value)
        named = f"{key}={bad!r}" in msg or (key == "segments.length" and "episode limit of 200" in msg) \
            or (key == "reward_model.label_smoothing" and "no effect with loss=rr" in msg)
        assert named, f"{key}={bad!r}: {msg}"


def test_issue_examples_fail_before_any_work(pendulum_cfg):
    for key, bad, msg in [("teacher.sigma", "abc", "teacher.sigma='abc': must be a number >= 0"),
                          ("segments.length", 0, "segments.length=0: must be an integer >= 1"),
                          ("strata.k", 0, "strata.k=0: must be an integer >= 1 (or null)"),
                          ("reward_model.val_fraction", 1.5, "reward_model.val_fraction=1.5: must be a number >= 0 and < 1"),
                          ("reward_model.lr", 0, "reward_model.lr=0: must be a number > 0"),
                          ("reward_model.batch_size", 0, "reward_model.batch_size=0: must be an integer >= 1"),
                          ("reward_model.strata", "global", "comes from the strata group")]:
        with pytest.raises(ConfigError) as err:
            validate(_set(pendulum_cfg, key, bad))
        assert msg in str(err.value)


def _stage_keys(spec) -> dict:
    """Each stage's own key (before its inputs' keys are chained in), as text."""
    from rlpref.control.protocols import protocol_for

    return {s.name: json.dumps(s.key(), sort_keys=True, default=str) for s in protocol_for(spec).stages(spec)}


def _moved(base: dict, other: dict) -> set:
    return {stage for stage, k in other.items() if base.get(stage) != k}


@pytest.mark.parametrize("key", sorted(MOVES))
def test_each_key_moves_exactly_the_artefacts_it_changes(compose_config, pendulum_cfg, key):
    value, expected = MOVES[key]
    base = _stage_keys(validate(pendulum_cfg))
    override = f"{key}={json.dumps(value) if not isinstance(value, str) else value}"
    if key == "strata.k":
        override = "strata.k=4"
    cfg = compose_config(["env=Pendulum-v1", "protocol=offline", override])
    if expected == "error":
        with pytest.raises(ValueError):
            validate(cfg)
        return
    moved = _moved(base, _stage_keys(validate(cfg)))
    assert moved == expected, f"{override}: moved {sorted(moved)}, expected {sorted(expected)}"


@pytest.mark.parametrize("case", [(p, k) for p, table in ROUND_MOVES.items() for k in sorted(table)])
def test_rounds_key_the_agent_with_what_they_read(compose_config, case):
    protocol, key = case
    value, expected = ROUND_MOVES[protocol][key]
    base_overrides = ["env=Pendulum-v1", f"protocol={protocol}"]
    base = _stage_keys(validate(compose_config(base_overrides)))
    other = _stage_keys(validate(compose_config([*base_overrides, f"{key}={value}"])))
    assert _moved(base, other) == expected, f"{protocol} {key}={value}: moved {sorted(_moved(base, other))}"


def test_strata_k_keys_the_reward_model_only_where_it_is_read(compose_config):
    def reward_key(*overrides):
        return _stage_keys(validate(compose_config(["env=Pendulum-v1", "protocol=offline", *overrides])))["reward_model"]

    assert reward_key("strata=by_batch", "strata.k=3") == reward_key("strata=by_batch", "strata.k=5")
    assert reward_key("strata=random_k", "strata.k=3") != reward_key("strata=random_k", "strata.k=5")
    assert reward_key("loss=bt", "reward_model.label_smoothing=0.1") != reward_key("loss=bt")


def test_offline_protocol_keeps_label_settings_out_of_the_agent_key(compose_config):
    def agent_key(*overrides):
        return _stage_keys(validate(compose_config(["env=Pendulum-v1", "budget=smoke", "protocol=offline", *overrides])))["agent"]

    assert agent_key() == agent_key("teacher.sigma=0.5") == agent_key("segments.n_envs=2")
    assert agent_key() != agent_key("+agent.overrides.learning_rate=0.003")


def test_sections_built_in_code_are_checked_too():
    from rlpref.control.reward_net import RewardTrainConfig
    from rlpref.control.teacher import TeacherConfig

    with pytest.raises(ConfigError, match="teacher.sigma=-1: must be a number >= 0"):
        TeacherConfig(sigma=-1)
    with pytest.raises(ConfigError, match=r"reward_model.hidden=\(8, 0\): must be a list of integers >= 1"):
        RewardTrainConfig(hidden=(8, 0))
    coerced = RewardTrainConfig(hidden=[8, 8], lr=1)  # lists and ints coerced where unambiguous
    assert coerced.hidden == (8, 8) and isinstance(coerced.lr, float)


@pytest.mark.parametrize("case", [(p, k) for p, table in PROTOCOL_INVALID.items() for k in sorted(table)])
def test_protocol_keys_reject_bad_values(compose_config, case):
    protocol, key = case
    cfg = compose_config(["env=Pendulum-v1", f"protocol={protocol}"])
    for bad in ["abc", *PROTOCOL_INVALID[protocol][key]]:
        if key.endswith(("pairing", "scale", "refit", "timing", "query_schedule")) and bad == "abc":
            continue
        with pytest.raises(ConfigError) as err:
            validate(_set(cfg, key, bad))
        msg = str(err.value)
        assert f"{key}={bad!r}" in msg or (key == "protocol.per_round" and "offline comparisons after" in msg), msg


@pytest.mark.parametrize("protocol", sorted(PROTOCOL_INVALID))
def test_protocol_tables_cover_every_protocol_key(compose_config, protocol):
    leaves = {k for k, _ in _leaves(compose_config(["env=Pendulum-v1", f"protocol={protocol}"]))
              if k.startswith("protocol.") and k != "protocol.name"}
    numeric = {k for k in leaves if not k.endswith(("deterministic", "keep_level"))}
    assert numeric == set(PROTOCOL_INVALID[protocol]), sorted(numeric ^ set(PROTOCOL_INVALID[protocol]))


@pytest.mark.parametrize("old", ["budget.online_rounds", "online.refit", "protocol.schedule", "protocol.n_feedback"])
def test_old_spellings_fail_naming_the_new_key(pendulum_cfg, old):
    from rlpref.control.config import MOVED_KEYS

    section, key = old.split(".")
    cfg = json.loads(json.dumps(pendulum_cfg))
    cfg.setdefault(section, {})[key] = 1
    with pytest.raises(ConfigError, match=f"{old} was moved: use " + MOVED_KEYS[old].split()[0].replace(".", r"\.")):
        validate(cfg)


def test_query_keys_move_feedback_and_agent_only_when_a_rule_selects(compose_config):
    def keys(*overrides):
        return _stage_keys(validate(compose_config(["env=Pendulum-v1", "protocol=offline", *overrides])))

    dopt = keys("query=dopt")
    assert dopt["feedback"] != keys("query=dopt", "query.pool=5")["feedback"]
    assert dopt["feedback"] != keys("query=dopt", "reward_model.lr=0.001")["feedback"]  # the chunks' models
    assert keys("reward_model.lr=0.001")["feedback"] == keys()["feedback"]  # random: no model involved
    with pytest.raises(ConfigError, match="set reward_model.ensemble >= 2"):
        keys("query=disagreement")
    assert keys("query=disagreement", "reward_model.ensemble=3")["feedback"] != dopt["feedback"]


def test_steps_scale_by_budget_applies_under_its_budget_only(compose_config, pendulum_cfg):
    """A task may scale the default budget's steps but keep another budget's (Walker2d: 1M at both)."""
    walker = {b: validate(compose_config(["env=Walker2d-v5", f"budget={b}"])).budget for b in ("default", "paper")}
    assert walker["default"].agent_steps == walker["paper"].agent_steps == 1_000_000
    base = _stage_keys(validate(pendulum_cfg))
    other = _stage_keys(validate(_set(pendulum_cfg, "env.steps_scale_by_budget", {"paper": 0.5})))
    assert other == base  # the run's budget (default) is not in the mapping: nothing moves
    own = validate(_set(pendulum_cfg, "env.steps_scale_by_budget", {"default": 0.5}))
    assert own.budget.agent_steps == validate(pendulum_cfg).budget.agent_steps // 2
    moved = {k for k, v in _stage_keys(own).items() if v != base[k]}
    assert moved == {"source", "agent"}
    for bad in ("abc", {"default": -1}, {"default": "x"}, {"default": True}):
        with pytest.raises(ValueError, match="env.steps_scale_by_budget=.*must be a mapping of budget names"):
            validate(_set(pendulum_cfg, "env.steps_scale_by_budget", bad))
