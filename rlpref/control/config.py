"""The control run's configuration: every Hydra section typed and checked, and what keys each artefact.

:meth:`RunSpec.from_config` turns the composed Hydra config into typed, fully defaulted sections
(:mod:`rlpref.schema`) before any stage runs, so a bad value fails in a second, naming its key. The
artefact keys are built from those sections only: a key holds every effective value a stage reads
(defaults included) and nothing it ignores, so it changes exactly when the artefact would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import numpy as np

from rlpref.control.algos import hyperparams, resolve_algo
from rlpref.control.online import OnlineConfig, query_schedule
from rlpref.control.query import QueryConfig
from rlpref.control.reward_net import RewardTrainConfig
from rlpref.control.teacher import TeacherConfig
from rlpref.losses import LOSS_SPECS, get_loss_spec
from rlpref.schema import ConfigError, Section, build, rule
from rlpref.strata import STRATIFIERS

__all__ = ["REWARDS", "BudgetConfig", "EnvConfig", "RenderConfig", "RunConfig", "RunSpec", "SegmentsConfig", "StrataConfig"]

REWARDS = ("learned", "oracle")
ALGOS = ("ppo", "sac")


@dataclass(frozen=True)
class BudgetConfig(Section):
    """Step and comparison counts (``conf/budget``); steps before ``env.steps_scale``."""

    SECTION = "budget"
    name: str = "default"
    source_steps: int = rule(250_000, ge=1)
    n_checkpoints: int = rule(10, ge=1)
    n_feedback: int = rule(1000, ge=2)
    agent_steps: int = rule(250_000, ge=1)
    eval_every: int = rule(25_000, ge=1)
    eval_episodes: int = rule(5, ge=1)
    online_rounds: int = rule(0, ge=0)
    online_feedback: int = rule(100, ge=2)
    online_schedule: str = rule("even", choices=("even", "early"))

    def scaled(self, scale: float) -> "BudgetConfig":
        """Step counts times ``env.steps_scale`` (e.g. 0.1 for the slow highway-env tasks)."""
        s = {k: max(1, int(round(getattr(self, k) * scale))) for k in ("source_steps", "agent_steps", "eval_every")}
        return BudgetConfig(**{**asdict(self), **s})


@dataclass(frozen=True)
class EnvConfig(Section):
    """One task (``conf/env``): how to make it and the per-algorithm hyperparameters (rl-zoo3 style data)."""

    SECTION = "env"
    id: str = rule()
    max_episode_steps: Optional[int] = rule(None, ge=1)
    discrete: bool = False
    algo: str = rule("ppo", choices=ALGOS)
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


@dataclass(frozen=True)
class ProtocolConfig(Section):
    """How feedback is gathered (``conf/protocol``): ``offline`` from a source agent's checkpoints, or
    ``online`` from the training agent itself over ``iterations`` (no source stage)."""

    SECTION = "protocol"
    name: str = rule("offline", choices=("offline", "online"))
    iterations: int = rule(10, ge=2)
    n_feedback: Optional[int] = rule(None, ge=4)
    initial_fraction: float = rule(0.1, gt=0.0, lt=1.0)
    schedule: str = rule("hyperbolic", choices=("constant", "hyperbolic"))

    def key(self) -> dict:
        return asdict(self) if self.name == "online" else {"name": "offline"}


@dataclass(frozen=True)
class RunConfig(Section):
    """The top-level keys; the rest are their own sections."""

    seed: int = rule(0, ge=0)
    reward: str = rule("learned", choices=REWARDS)
    torch_threads: int = rule(1, ge=1)
    video: bool = False
    reward_norm: str = rule("return", choices=("return", "step", "none"))  # how the agent sees r_θ


def _section(cfg: Mapping[str, Any], name: str) -> dict:
    value = cfg.get(name)
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a config group (a mapping), got {value!r}")
    return dict(value or {})


@dataclass(frozen=True)
class RunSpec:
    """One run's resolved configuration, and the configs that key each stage's artefact."""

    cfg: Mapping[str, Any]  # the whole resolved config, recorded in results.json
    run: RunConfig
    env: dict  # EnvConfig as a mapping, the form the env builders take
    algo: str
    source_hp: dict  # the source agent's hyperparameters: the env's, without agent.overrides
    hp: dict  # the learned-reward agent's: the env's merged with agent.overrides
    gamma: float
    budget: BudgetConfig  # scaled by env.steps_scale
    loss: str
    segments: SegmentsConfig
    teacher: TeacherConfig
    reward_train: RewardTrainConfig
    online: OnlineConfig
    render: RenderConfig
    protocol: ProtocolConfig
    query: QueryConfig

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "RunSpec":
        """Every section typed and checked; raises :class:`ConfigError`/ValueError naming key and fix."""
        top = {k: cfg[k] for k in ("seed", "reward", "torch_threads", "video", "reward_norm") if k in cfg}
        run = build(RunConfig, top)
        loss = str(_section(cfg, "loss").get("name", "rr"))
        if loss not in LOSS_SPECS:
            raise ConfigError(f"unknown loss '{loss}'; choose one of: {', '.join(LOSS_SPECS)}")
        env_cfg = build(EnvConfig, _section(cfg, "env"))
        agent = _section(cfg, "agent")
        algo = resolve_algo(agent.get("name", "auto"), asdict(env_cfg))
        hp = hyperparams(asdict(env_cfg), algo, agent.get("overrides"))
        strata = build(StrataConfig, _section(cfg, "strata"))
        rm = _section(cfg, "reward_model")
        for key in ("strata", "strata_k"):
            if key in rm:
                raise ConfigError(f"reward_model.{key} comes from the strata group: use strata=<by_batch|global|"
                                  "random_k|round_robin> and strata.k=<int>")
        reward_train = build(RewardTrainConfig, rm)
        budget = build(BudgetConfig, _section(cfg, "budget"))
        reward_train = RewardTrainConfig(**{**asdict(reward_train), "strata": strata.kind, "strata_k": strata.k})
        _check_loss_options(loss, reward_train)
        spec = cls(cfg=cfg, run=run, env=asdict(env_cfg), algo=algo, source_hp=hyperparams(asdict(env_cfg), algo),
                   hp=hp, gamma=float(hp.get("gamma", 0.99)),
                   budget=budget.scaled(env_cfg.scale_for(budget.name)),
                   loss=loss, segments=build(SegmentsConfig, _section(cfg, "segments")),
                   teacher=TeacherConfig.from_mapping(_section(cfg, "teacher")), reward_train=reward_train,
                   online=OnlineConfig.from_mapping(_section(cfg, "online")),
                   render=build(RenderConfig, _section(cfg, "render")),
                   protocol=build(ProtocolConfig, _section(cfg, "protocol") or {"name": "offline"}),
                   query=build(QueryConfig, _section(cfg, "query")))
        spec._check_segment_length()
        if spec.query.name == "disagreement" and spec.reward_train.ensemble < 2:
            raise ConfigError("query=disagreement ranks pairs by how much ensemble members disagree: set "
                              f"reward_model.ensemble >= 2 (got {spec.reward_train.ensemble})")
        return spec

    def _check_segment_length(self) -> None:
        max_len = self.env.get("max_episode_steps")
        if max_len and self.segments.length > int(max_len):
            raise ConfigError(f"segments.length={self.segments.length} exceeds {self.env['id']}'s episode limit of "
                              f"{max_len} steps; set segments.length<={max_len}")

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def learned(self) -> bool:
        return self.run.reward == "learned"

    @property
    def online_protocol(self) -> bool:
        """No source stage: the learned-reward agent gathers all feedback itself (``protocol=online``)."""
        return self.learned and self.protocol.name == "online"

    @property
    def online_rounds(self) -> bool:
        return self.learned and (self.online.rounds > 0 or self.online_protocol)

    @property
    def protocol_total_feedback(self) -> int:
        """Comparisons of the online protocol in all (default: the offline budget's, rounds included)."""
        p, b = self.protocol, self.budget
        return p.n_feedback if p.n_feedback is not None else b.n_feedback + b.online_rounds * b.online_feedback

    def rounds_config(self) -> OnlineConfig:
        """The rounds during agent training: as configured, or the online protocol's iterations after the first."""
        if not self.online_protocol:
            return self.online
        return OnlineConfig(**{**asdict(self.online), "rounds": self.protocol.iterations - 1, "schedule": "even"})

    def query_counts(self) -> Optional[list[int]]:
        """Comparisons per iteration of the online protocol (the first before training); None offline."""
        if not self.online_protocol:
            return None
        p = self.protocol
        return query_schedule(self.protocol_total_feedback, p.iterations, p.initial_fraction, p.schedule)

    @property
    def n_feedback(self) -> int:
        return self.budget.n_feedback

    # -- what keys each artefact (inputs' keys are chained in by the store) ------------------------------
    def source_key(self) -> dict:
        return {"env": EnvConfig(**self.env).key(), "algo": self.algo, "hyperparams": self.source_hp,
                "steps": self.budget.source_steps, "n_checkpoints": self.budget.n_checkpoints, "seed": self.seed}

    def segments_key(self) -> dict:
        return {**asdict(self.segments), "n_feedback": self.n_feedback, "gamma": self.gamma, "seed": self.seed}

    def feedback_key(self) -> dict:
        key = {**asdict(self.teacher), "n_feedback": self.n_feedback, "gamma": self.gamma, "seed": self.seed}
        if self.query.active:  # the queries are chosen by reward models fitted on the earlier chunks
            key["query"] = {**self.query.key(), "reward_model": self.reward_key()}
        return key

    def reward_key(self) -> dict:
        return {"loss": self.loss, **self.reward_train.key(self.loss), "seed": self.seed}

    def agent_key(self) -> dict:
        key = {"env": EnvConfig(**self.env).key(), "algo": self.algo, "hyperparams": self.hp,
               "steps": self.budget.agent_steps, "eval_every": self.budget.eval_every,
               "eval_episodes": self.budget.eval_episodes, "reward": self.run.reward, "seed": self.seed}
        if self.learned and self.run.reward_norm != "return":  # left out at the default: keys made before it stay valid
            key["reward_norm"] = self.run.reward_norm
        if self.online_rounds:
            # The rounds label and refit inside the agent stage, so everything they use keys the agent.
            key["online"] = {**self.rounds_config().key(), "teacher": self.feedback_key(),
                             "reward_model": self.reward_key(), "segments": self.segments_key()}
        if self.online_protocol:
            key["protocol"] = {**self.protocol.key(), "counts": self.query_counts()}
        if self.online_rounds and self.query.active:
            key["online"]["query"] = self.query.key()
        return key

    def stage_costs(self) -> list[tuple[str, float]]:
        """Each stage's rough cost in agent-training steps, for the run's ETA (measured ratios on
        HalfCheetah-v4: a rollout step costs ~1/10 of a PPO training step, fitting the reward model ~30
        steps per comparison, an online round ~3 steps per comparison held, an evaluation step ~1/10)."""
        b = self.budget
        episode = int(self.env.get("max_episode_steps") or 1000)
        rounds, per_round = (self.online.rounds, self.online.n_feedback) if self.online_rounds else (0, 0)
        if self.online_protocol:
            counts = self.query_counts()
            rounds, per_round = len(counts), int(np.mean(counts))
        evals = b.agent_steps / b.eval_every + 1
        agent = (b.agent_steps * 1.1 + evals * b.eval_episodes * episode / 10
                 + rounds * (per_round * 50 / 10 + 3 * (self.n_feedback + rounds * per_round / 2)))
        if not self.learned or self.online_protocol:
            return [("agent", agent)]
        rollout = self.n_feedback * self.segments.length
        return [("source", float(b.source_steps)), ("segments", rollout / 10), ("feedback", 1.0),
                ("reward_model", 30.0 * self.n_feedback), ("agent", agent)]


def _check_loss_options(loss: str, reward_train: RewardTrainConfig) -> None:
    spec = get_loss_spec(loss)
    if reward_train.label_smoothing and "label_smoothing" not in spec.options:
        takes = [n for n, s in LOSS_SPECS.items() if "label_smoothing" in s.options]
        raise ConfigError(f"reward_model.label_smoothing={reward_train.label_smoothing} has no effect with loss={loss}; "
                          f"it applies to: {', '.join(takes)} (set it to 0)")
