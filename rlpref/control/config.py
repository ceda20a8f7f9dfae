"""The control run's configuration: every Hydra section typed and checked before any work.

:meth:`RunSpec.from_config` turns the composed Hydra config into typed, fully defaulted sections
(:mod:`rlpref.schema`) before any stage runs, so a bad value fails in a second, naming its key. What
keys each artefact is not decided here: a stage's key is derived from the arguments it is called with
(:mod:`rlpref.control.stages`), so the two cannot drift apart.

The protocol sections (``conf/protocol``) own everything about *when* feedback is gathered: rounds, their
timing, the query schedule and how each iteration rolls out, labels and refits; ``budget`` holds counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import numpy as np

from rlpref.control.algos import hyperparams, resolve_algo
from rlpref.control.query import QueryConfig
from rlpref.control.reward_net import RewardTrainConfig
from rlpref.control.teacher import TeacherConfig
from rlpref.losses import LOSS_SPECS, get_loss_spec
from rlpref.schema import ConfigError, Section, build, rule
from rlpref.strata import STRATIFIERS

__all__ = [
    "PROTOCOLS", "REWARDS", "AgentSpec", "BudgetConfig", "EnvConfig", "IterationConfig", "OfflineConfig",
    "OfflineRoundsConfig", "OnlineConfig", "RenderConfig", "RunConfig", "RunSpec", "SegmentsConfig", "StrataConfig",
    "query_schedule",
]

REWARDS = ("learned", "oracle")
ALGOS = ("ppo", "sac")


@dataclass(frozen=True)
class BudgetConfig(Section):
    """Counts only (``conf/budget``): steps before ``env.steps_scale``, comparisons in all (every feedback
    iteration of the protocol included), evaluation."""

    SECTION = "budget"
    name: str = "default"
    source_steps: int = rule(250_000, ge=1)
    n_checkpoints: int = rule(10, ge=1)
    n_feedback: int = rule(1540, ge=2)
    agent_steps: int = rule(250_000, ge=1)
    eval_every: int = rule(25_000, ge=1)
    eval_episodes: int = rule(5, ge=1)

    def scaled(self, scale: float) -> "BudgetConfig":
        """Step counts times ``env.steps_scale`` (e.g. 0.1 for the slow highway-env tasks)."""
        s = {k: max(1, int(round(getattr(self, k) * scale))) for k in ("source_steps", "agent_steps", "eval_every")}
        return BudgetConfig(**{**asdict(self), **s})


@dataclass(frozen=True)
class EnvConfig(Section):
    """One task (``conf/env``): how to make it and the per-algorithm hyperparameters (rl-zoo3 style data)."""

    SECTION = "env"
    id: str = rule()
    max_episode_steps: Optional[int] = rule(None, ge=1)  # None: the registered env's own limit
    discrete: Optional[bool] = None  # None: read from the env's action space (env=gym)
    algo: str = rule("ppo", choices=("auto",) + ALGOS)  # auto: sac for continuous actions, ppo for discrete
    tuned_for: Optional[str] = None  # the id this file's hyperparameters were tuned for (None: generic)
    n_envs: int = rule(1, ge=1)
    steps_scale: float = rule(1.0, gt=0.0)
    # budget name -> scale used instead of steps_scale under that budget (e.g. {paper: 1.0} keeps the
    # paper's step count on a task whose default budget is scaled up)
    steps_scale_by_budget: dict = rule(default_factory=dict, check=lambda d: isinstance(d, dict) and all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
        for k, v in d.items()), allowed="a mapping of budget names to numbers > 0")
    normalize: dict = rule(default_factory=lambda: {"obs": True, "reward": True})
    env_kwargs: dict = rule(default_factory=dict)
    hyperparams: dict = rule(default_factory=dict)

    def scale_for(self, budget: str) -> float:
        """The step scale under budget ``budget``."""
        return float(self.steps_scale_by_budget.get(budget, self.steps_scale))

    def key(self) -> dict:
        """What makes the env itself: the algorithm, its hyperparameters and the step scale key elsewhere."""
        return {"id": self.id, "max_episode_steps": self.max_episode_steps, "discrete": self.discrete,
                "n_envs": self.n_envs, "normalize": dict(self.normalize), "env_kwargs": dict(self.env_kwargs)}

    def mapping(self) -> dict:
        """The plain mapping the env builders (:mod:`envs`, :mod:`rlpref.control.algos`) take."""
        return asdict(self)


def resolve_env(env: EnvConfig) -> EnvConfig:
    """A generic env file (``env=gym``: no ``tuned_for``) leaves open what the registered env knows: whether
    its actions are discrete, its episode limit, and ``algo: auto`` (SAC for continuous actions, PPO for
    discrete ones). A tuned file states them and must not be pointed at another id. An unknown id fails here,
    before any work, with the fix."""
    if env.tuned_for is not None:
        if env.tuned_for != env.id:
            raise ConfigError(f"env.id={env.id!r}: this env file holds hyperparameters tuned for {env.tuned_for}; for "
                              f"another env use env=gym env.id={env.id} (generic defaults) or add conf/env/{env.id}.yaml")
        return env
    if env.id in ("", "???"):
        raise ConfigError("env.id is required with env=gym: env.id=<registered Gymnasium id> (or module:EnvId)")
    import gymnasium as gym

    from envs import make_env

    try:
        made = make_env(env.id, max_episode_steps=env.max_episode_steps, env_kwargs=env.env_kwargs)
    except (gym.error.Error, ValueError, ImportError) as exc:
        raise ConfigError(f"env.id={env.id!r}: not a registered Gymnasium env ({' '.join(str(exc).split())}); give "
                          "a registered id, or 'module:EnvId' for an env that registers when its module is "
                          "imported") from None
    discrete = isinstance(made.action_space, gym.spaces.Discrete)
    limit = env.max_episode_steps or (made.spec.max_episode_steps if made.spec is not None else None)
    made.close()
    if not discrete and not isinstance(made.action_space, gym.spaces.Box):
        raise ConfigError(f"env.id={env.id!r}: action space {made.action_space} is neither Box nor Discrete; "
                          "rlpref's reward models and agents take one of those two")
    algo = env.algo if env.algo != "auto" else ("ppo" if discrete else "sac")
    return EnvConfig(**{**asdict(env), "discrete": discrete if env.discrete is None else env.discrete,
                        "algo": algo, "max_episode_steps": limit})


@dataclass(frozen=True)
class SegmentsConfig(Section):
    SECTION = "segments"
    length: int = rule(50, ge=1)  # steps per segment
    oversample: float = rule(1.5, ge=1.0)  # segments cut per rollout batch = oversample x 2 x comparisons per batch
    n_envs: int = rule(8, ge=1)
    deterministic: bool = True


@dataclass(frozen=True)
class StrataConfig(Section):
    SECTION = "strata"
    name: str = "by_batch"
    kind: str = rule("by_group", choices=STRATIFIERS)
    k: Optional[int] = rule(None, ge=1)


@dataclass(frozen=True)
class RenderConfig(Section):
    """The video of the final policy (``video=true`` or ``python -m rlpref.video``)."""

    SECTION = "render"
    episodes: int = rule(1, ge=1)
    max_steps: Optional[int] = rule(None, ge=1)  # None: whole episodes
    width: int = rule(320, ge=16)
    height: int = rule(240, ge=16)
    seed: int = rule(2024, ge=0)


PAIRINGS = ("within", "across", "mixed")
SCALES = ("all", "round")
REFITS = ("gated", "trained")
TIMINGS = ("even", "early")
QUERY_SCHEDULES = ("constant", "hyperbolic")


@dataclass(frozen=True)
class IterationConfig(Section):
    """How each feedback iteration during agent training rolls the agent out, pairs and labels its clips and
    refits r_θ (``protocol.iteration``; :mod:`rlpref.control.feedback` says why each choice exists)."""

    SECTION = "protocol.iteration"
    deterministic: bool = False  # roll the agent out as it trains (stochastic) or with its mean action
    n_envs: int = rule(8, ge=1)
    pairing: str = rule("within", choices=PAIRINGS)  # within: new x new clips; across: new x earlier; mixed: half each
    scale: str = rule("round", choices=SCALES)  # the teacher's yardstick for within pairs: the iteration's returns, or all
    action_noise: float = rule(0.0, ge=0.0)  # extra exploration in the rollout, graded 0..this across its envs
    refit: str = rule("trained", choices=REFITS)  # trained: always take a trained epoch; gated: keep r_θ unless val loss drops
    keep_level: bool = False  # after a refit, serve r_θ at the mean and sd the agent saw on the iteration's clips
    refit_epochs: Optional[int] = rule(2, ge=1)  # at most this many epochs per refit (None: reward_model.max_epochs)
    refit_replay: Optional[float] = rule(None, ge=0.0)  # refit epochs: the new pairs + this many times as many older ones

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.action_noise > 0 and self.n_envs < 2:
            raise ConfigError("protocol.iteration.action_noise grades noise across the rollout's envs, so it needs "
                              f"protocol.iteration.n_envs >= 2 (got {self.n_envs}); env 0 always acts without noise")


def due_steps(total_steps: int, rounds: int, timing: str) -> list[int]:
    """Agent steps after which each of ``rounds`` rounds runs: ``even`` after each (R+1)-th of training,
    ``early`` at T·(i/(R+1))^1.5 (denser at the start, where a reward hack is still cheap to unlearn)."""
    power = 1.0 if timing == "even" else 1.5
    return [int(round(total_steps * ((i + 1) / (rounds + 1)) ** power)) for i in range(rounds)]


def query_schedule(total: int, iterations: int, initial_fraction: float, schedule: str) -> list[int]:
    """Comparisons per feedback iteration: ``initial_fraction`` of ``total`` up front (added to the first
    iteration), the rest shared by ``schedule`` over ``iterations`` evenly spaced points t ∈ [0, 1] of
    training: ``constant`` equally, ``hyperbolic`` ∝ 1/(1 + t) (more queries early, as imitation's
    PreferenceComparisons does). Shares are rounded so that they sum to ``total``."""
    if schedule not in QUERY_SCHEDULES:
        raise ValueError(f"unknown query schedule '{schedule}'; choose one of: {', '.join(QUERY_SCHEDULES)}")
    initial = int(total * initial_fraction)
    t = np.linspace(0.0, 1.0, iterations)
    weight = np.ones(iterations) if schedule == "constant" else 1.0 / (1.0 + t)
    raw = weight / weight.sum() * (total - initial)
    shares = np.floor(raw).astype(int)
    shares[np.argsort(shares - raw)[: (total - initial) - shares.sum()]] += 1  # largest remainders first
    shares[0] += initial
    return shares.tolist()


@dataclass(frozen=True)
class OfflineConfig(Section):
    """``protocol=offline``, the paper's: every comparison labels a source agent's clips before the agent trains."""

    SECTION = "protocol"
    name: str = rule("offline", choices=("offline",))

    def counts(self, n_feedback: int) -> list[int]:
        """Comparisons per feedback iteration: all of them in one, before the agent trains."""
        return [n_feedback]


@dataclass(frozen=True)
class OfflineRoundsConfig(Section):
    """``protocol=offline_rounds``: the offline feedback, then ``rounds`` rounds of ``per_round`` comparisons on
    the training agent's own play; the offline part gets what the rounds leave of ``budget.n_feedback``."""

    SECTION = "protocol"
    name: str = rule("offline_rounds", choices=("offline_rounds",))
    rounds: int = rule(9, ge=1)
    per_round: int = rule(60, ge=2)
    timing: str = rule("early", choices=TIMINGS)
    iteration: IterationConfig = rule(default_factory=IterationConfig)

    def counts(self, n_feedback: int) -> list[int]:
        """Comparisons per iteration: the offline part first, then each round's."""
        offline = n_feedback - self.rounds * self.per_round
        if offline < 2:
            raise ConfigError(f"budget.n_feedback={n_feedback} leaves {offline} offline comparisons after "
                              f"protocol.rounds={self.rounds} x protocol.per_round={self.per_round}; raise "
                              "budget.n_feedback or lower the rounds")
        return [offline] + [self.per_round] * self.rounds

    def due(self, agent_steps: int) -> list[int]:
        return due_steps(agent_steps, self.rounds, self.timing)


@dataclass(frozen=True)
class OnlineConfig(Section):
    """``protocol=online``: no source agent; ``iterations`` feedback iterations, the first before training (on
    a uniformly random policy's play), the rest evenly spaced during it, sharing ``budget.n_feedback`` by
    ``query_schedule``."""

    SECTION = "protocol"
    name: str = rule("online", choices=("online",))
    iterations: int = rule(10, ge=2)
    initial_fraction: float = rule(0.1, gt=0.0, lt=1.0)
    query_schedule: str = rule("hyperbolic", choices=QUERY_SCHEDULES)
    iteration: IterationConfig = rule(default_factory=IterationConfig)

    def counts(self, n_feedback: int) -> list[int]:
        return query_schedule(n_feedback, self.iterations, self.initial_fraction, self.query_schedule)

    def due(self, agent_steps: int) -> list[int]:
        return due_steps(agent_steps, self.iterations - 1, "even")


PROTOCOLS = {c.name: c for c in (OfflineConfig(), OfflineRoundsConfig(), OnlineConfig())}

#: Spellings of earlier versions -> where the setting lives now (a config that uses one fails naming it).
MOVED_KEYS = {
    "budget.online_rounds": "protocol=offline_rounds protocol.rounds=<R> (protocol=offline has no rounds)",
    "budget.online_feedback": "protocol.per_round (under protocol=offline_rounds)",
    "budget.online_schedule": "protocol.timing (under protocol=offline_rounds)",
    "online.rounds": "protocol=offline_rounds protocol.rounds=<R> (protocol=offline has no rounds)",
    "online.n_feedback": "protocol.per_round (under protocol=offline_rounds)",
    "online.schedule": "protocol.timing (under protocol=offline_rounds)",
    **{f"online.{k}": f"protocol.iteration.{k}" for k in (
        "deterministic", "n_envs", "pairing", "scale", "action_noise", "refit", "keep_level", "refit_epochs",
        "refit_replay")},
    "protocol.schedule": "protocol.query_schedule (under protocol=online)",
    "protocol.n_feedback": "budget.n_feedback (comparisons in all, every iteration included)",
}


def moved_key_message(key: str) -> Optional[str]:
    """'<key> was renamed: use <new>' for an old spelling, else None."""
    new = MOVED_KEYS.get(key.lstrip("+~"))
    return f"{key.lstrip('+~')} was moved: use {new}" if new else None


def _check_moved(cfg: Mapping[str, Any]) -> None:
    for dotted in MOVED_KEYS:
        section, key = dotted.split(".")
        if isinstance(cfg.get(section), Mapping) and key in cfg[section]:
            raise ConfigError(moved_key_message(dotted))
    if cfg.get("online") is not None:
        raise ConfigError("the online section was moved: its keys live under protocol.iteration (rounds: "
                          "protocol=offline_rounds protocol.rounds=<R>)")


@dataclass(frozen=True)
class RunConfig(Section):
    """The top-level keys; the rest are their own sections."""

    seed: int = rule(0, ge=0)
    reward: str = rule("learned", choices=REWARDS)
    torch_threads: int = rule(1, ge=1)
    video: bool = False
    reward_norm: str = rule("return", choices=("return", "step", "none"))  # how the agent sees r_θ


@dataclass(frozen=True)
class AgentSpec:
    """The agents' algorithm and hyperparameters, resolved once and handed to every stage that trains one:
    the source agent's are the env's own (``source_hp``), the learned-reward agent's have ``agent.overrides``
    merged in (``hp``; its γ also discounts the segments' returns)."""

    algo: str
    hp: dict
    source_hp: dict

    @property
    def gamma(self) -> float:
        return float(self.hp.get("gamma", 0.99))


def _section(cfg: Mapping[str, Any], name: str) -> dict:
    value = cfg.get(name)
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a config group (a mapping), got {value!r}")
    return dict(value or {})


def _protocol(cfg: Mapping[str, Any]):
    raw = _section(cfg, "protocol") or {"name": "offline"}
    name = raw.get("name")
    if name not in PROTOCOLS:
        raise ConfigError(f"protocol.name={name!r}: must be one of: {', '.join(PROTOCOLS)} (protocol=<name>)")
    return build(type(PROTOCOLS[name]), raw)


@dataclass(frozen=True)
class RunSpec:
    """One run's resolved configuration: every section typed, the env resolved, the budget scaled."""

    cfg: Mapping[str, Any]  # the whole resolved config, recorded in results.json
    run: RunConfig
    env: EnvConfig
    agent: AgentSpec
    budget: BudgetConfig  # scaled by env.steps_scale
    loss: str
    segments: SegmentsConfig
    teacher: TeacherConfig
    reward_train: RewardTrainConfig
    render: RenderConfig
    protocol: Any  # OfflineConfig | OfflineRoundsConfig | OnlineConfig
    query: QueryConfig

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "RunSpec":
        """Every section typed and checked; raises :class:`ConfigError`/ValueError naming key and fix."""
        _check_moved(cfg)
        top = {k: cfg[k] for k in ("seed", "reward", "torch_threads", "video", "reward_norm") if k in cfg}
        run = build(RunConfig, top)
        loss = str(_section(cfg, "loss").get("name", "rr"))
        if loss not in LOSS_SPECS:
            raise ConfigError(f"unknown loss '{loss}'; choose one of: {', '.join(LOSS_SPECS)}")
        env = resolve_env(build(EnvConfig, _section(cfg, "env")))
        agent = _agent(env, _section(cfg, "agent"))
        reward_train = _reward_train(cfg, loss)
        budget = build(BudgetConfig, _section(cfg, "budget"))
        spec = cls(cfg=cfg, run=run, env=env, agent=agent, budget=budget.scaled(env.scale_for(budget.name)),
                   loss=loss, segments=build(SegmentsConfig, _section(cfg, "segments")),
                   teacher=TeacherConfig.from_mapping(_section(cfg, "teacher")), reward_train=reward_train,
                   render=build(RenderConfig, _section(cfg, "render")), protocol=_protocol(cfg),
                   query=build(QueryConfig, _section(cfg, "query")))
        spec._check_segment_length()
        spec.protocol.counts(spec.budget.n_feedback)  # raises where the budget cannot pay for the rounds
        if spec.query.name == "disagreement" and spec.reward_train.ensemble < 2:
            raise ConfigError("query=disagreement ranks pairs by how much ensemble members disagree: set "
                              f"reward_model.ensemble >= 2 (got {spec.reward_train.ensemble})")
        return spec

    def _check_segment_length(self) -> None:
        max_len = self.env.max_episode_steps
        if max_len and self.segments.length > int(max_len):
            raise ConfigError(f"segments.length={self.segments.length} exceeds {self.env.id}'s episode limit of "
                              f"{max_len} steps; set segments.length<={max_len}")

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def gamma(self) -> float:
        return self.agent.gamma


def _agent(env: EnvConfig, agent: Mapping[str, Any]) -> AgentSpec:
    algo = resolve_algo(agent.get("name", "auto"), env.mapping())
    return AgentSpec(algo=algo, hp=hyperparams(env.mapping(), algo, agent.get("overrides")),
                     source_hp=hyperparams(env.mapping(), algo))


def _reward_train(cfg: Mapping[str, Any], loss: str) -> RewardTrainConfig:
    strata = build(StrataConfig, _section(cfg, "strata"))
    rm = _section(cfg, "reward_model")
    for key in ("strata", "strata_k"):
        if key in rm:
            raise ConfigError(f"reward_model.{key} comes from the strata group: use strata=<by_batch|global|"
                              "random_k|round_robin> and strata.k=<int>")
    reward_train = build(RewardTrainConfig, rm)
    reward_train = RewardTrainConfig(**{**asdict(reward_train), "strata": strata.kind, "strata_k": strata.k})
    _check_loss_options(loss, reward_train)
    return reward_train


def _check_loss_options(loss: str, reward_train: RewardTrainConfig) -> None:
    spec = get_loss_spec(loss)
    if reward_train.label_smoothing and "label_smoothing" not in spec.options:
        takes = [n for n, s in LOSS_SPECS.items() if "label_smoothing" in s.options]
        raise ConfigError(f"reward_model.label_smoothing={reward_train.label_smoothing} has no effect with loss={loss}; "
                          f"it applies to: {', '.join(takes)} (set it to 0)")
