"""Train a text reward model on pairwise preferences: ``python -m rlpref.llm.train experiment=rr_agree``.

Pipeline: data (MultiPref from a file or the hub, or the labelled simulated stand-in) → deterministic
train/test split by prompt → training labels from one random non-tie annotation per comparison
(seeded; the first ``fraction`` of a seeded permutation) → strength rank keys → strata per
annotator, split round-robin so no stratum holds tied keys → whole-stratum batches → reward model
trained with the loss's :class:`rlpref.losses.LossSpec` → test accuracy against the aggregated
preference (and against the hidden utility on simulated data). Writes ``results.json`` to the Hydra
run directory. The config is read once into :class:`rlpref.llm.config.LLMRunConfig`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from rlpref import strata as strata_lib
from rlpref.artifacts import atomic_path, atomic_write_json
from rlpref.llm.config import LLMConfigError, LLMModelConfig, LLMRunConfig
from rlpref.llm.crosstopic import make_fold
from rlpref.llm.evaluate import evaluate_rewards
from rlpref.llm.models import FrozenEncoder, RewardHead, SequenceRewardModel, pair_features, resolve_model
from rlpref.llm.multipref import SIMULATED_SOURCE, Comparison, hub_reachable, load_multipref
from rlpref.llm.sampler import StratumBatchSampler
from rlpref.llm.simulated import simulated_dataset
from rlpref.llm.splits import TestSet, TrainPairs, make_test_set, sample_train_pairs, split_by_prompt
from rlpref.llm.strength import strength_keys
from rlpref.llm.ukpconvarg1 import UKPDataUnavailable, UKPFormatError, load_ukpconvarg1, locate, to_comparisons
from rlpref.losses import LossSpec, get_loss_spec
from rlpref.runtime import configure_compute

log = logging.getLogger(__name__)

__all__ = [
    "LLMConfigError",
    "LLMModelConfig",
    "LLMRunConfig",
    "Fit",
    "Prepared",
    "TrainingData",
    "build_strata",
    "build_training_data",
    "load_comparisons",
    "make_batch_loss",
    "prepare",
    "prepare_ukp_folds",
    "run",
]

SIMULATED_LABEL = (
    "SIMULATED multi-annotator preferences (rlpref-simulated) over real Python-documentation text "
    "with a hidden utility — NOT MultiPref"
)

#: (prompts, completions) -> rewards [N], the form RewardBench scoring takes.
RewardFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]
#: (u_chosen, u_rejected, batch indices) -> scalar loss.
BatchLoss = Callable[[torch.Tensor, torch.Tensor, Sequence[int]], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _resolve_source(rc: LLMRunConfig) -> str:
    """``data.source=auto``: a file if ``data.path`` is set, else the hub if reachable, else simulated."""
    if rc.data.source != "auto":
        return rc.data.source
    if rc.data.path:
        return "file"
    if hub_reachable():
        return "hub"
    log.warning("no network and no data.path: using the SIMULATED data set (not MultiPref)")
    return "simulated"


def load_comparisons(cfg: Any) -> tuple[list[Comparison], str]:
    """The comparisons of ``data.source`` and a label of the data set for every output."""
    rc = LLMRunConfig.from_config(cfg)
    d = rc.data
    source = _resolve_source(rc)
    if source == "file":
        comps = load_multipref(str(d.path), annotators=d.annotators)
        label = f"MultiPref schema from file {d.path}"
    elif source == "hub":
        comps = load_multipref(None, hub_id=d.hub_id, hub_config=d.hub_config, annotators=d.annotators)
        label = f"{d.hub_id} (Hugging Face hub)"
    else:
        path = simulated_dataset(rc.cache_dir, progress=rc.progress, **dataclasses.asdict(d.simulated))
        comps = load_multipref(str(path), annotators=d.annotators)
        label = SIMULATED_LABEL
    if any(c.source == SIMULATED_SOURCE for c in comps):
        label = SIMULATED_LABEL
    return comps, label


#: comparison indices -> (rewards of completion A, rewards of completion B)
RewardsOf = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Prepared:
    """Everything that does not depend on seed, fraction or loss: reused across a grid."""

    comparisons: list
    dataset: str
    train_index: list
    test: TestSet
    feat_a: Optional[np.ndarray] = None  # frozen features of (prompt, completion_a), all comparisons
    feat_b: Optional[np.ndarray] = None
    extra_eval: Optional[Callable[[RewardsOf], dict]] = None  # data-specific metrics (UKPConvArg1)
    info: dict = dataclasses.field(default_factory=dict)  # copied into results (fold, loader counts)


def _frozen_features(rc: LLMRunConfig, comps: Sequence[Comparison]) -> tuple[np.ndarray, np.ndarray]:
    """Features of (prompt, completion A) and (prompt, completion B) of every comparison, each text encoded once."""
    m = rc.model
    enc = FrozenEncoder(m.name, max_seq_length=m.max_seq_length, batch_size=m.encode_batch_size,
                        cache_dir=rc.cache_dir, device=rc.device, progress=rc.progress)
    prompts = sorted({c.prompt for c in comps})
    completions = sorted({t for c in comps for t in (c.completion_a, c.completion_b)})
    e_p = dict(zip(prompts, enc(prompts)))
    e_c = dict(zip(completions, enc(completions)))
    p = np.stack([e_p[c.prompt] for c in comps])
    feat_a = pair_features(p, np.stack([e_c[c.completion_a] for c in comps]))
    feat_b = pair_features(p, np.stack([e_c[c.completion_b] for c in comps]))
    return feat_a, feat_b


UKP_LABEL = "UKPConvArg1 (real crowd votes, 5 per pair), cross-topic"


def prepare_ukp_folds(cfg: Any, folds: Optional[Sequence[int]] = None) -> list[Prepared]:
    """UKPConvArg1 read, mapped and (frozen model) encoded once, split into the cross-topic ``folds``
    (default: ``data.ukp.fold``) of ``data.ukp.folds`` over debates; the folds share the features."""
    rc = LLMRunConfig.from_config(cfg)
    d = rc.data
    corpus = load_ukpconvarg1(locate(d.path, rc.cache_dir, d.ukp.download))
    comps = to_comparisons(corpus)
    feats = _frozen_features(rc, comps) if rc.model.kind == "frozen" else (None, None)
    debate = [q.debate for q in corpus.pairs]
    arg_ids = [(q.arg1_id, q.arg2_id) for q in corpus.pairs]
    out = []
    for f in (d.ukp.fold,) if folds is None else folds:
        fd = make_fold(comps, debate, arg_ids, f, d.ukp.folds, corpus.strict, corpus.convincingness)
        info = {"fold": f, "folds": d.ukp.folds, "heldout_debates": fd.heldout_debates,
                "load_report": dataclasses.asdict(corpus.report)}
        out.append(Prepared(comps, f"{UKP_LABEL} fold {f}/{d.ukp.folds} from {corpus.folder}", fd.train_index,
                            fd.test, feats[0], feats[1], extra_eval=fd.extra, info=info))
    return out


def prepare(cfg: Any) -> Prepared:
    """Load, split and (frozen model) encode once; ``cfg``: a Hydra config, a mapping or an LLMRunConfig."""
    rc = LLMRunConfig.from_config(cfg)
    if rc.data.source == "ukpconvarg1":
        return prepare_ukp_folds(rc)[0]
    comps, label = load_comparisons(rc)
    train_idx, test_idx = split_by_prompt(comps, rc.data.test_fraction, rc.data.split_salt)
    prep = Prepared(comps, label, train_idx, make_test_set(comps, test_idx))
    if rc.model.kind == "frozen":
        prep.feat_a, prep.feat_b = _frozen_features(rc, comps)
    return prep


# --------------------------------------------------------------------------------------------
# Training pairs, strength and strata
# --------------------------------------------------------------------------------------------


def build_strata(key: np.ndarray, annotator: np.ndarray, kind: str = "annotator", k: Optional[int] = None,
                 prompt: Optional[np.ndarray] = None) -> np.ndarray:
    """Stratum ids [N]: ``annotator`` = per annotator, split round-robin by strength so no stratum
    holds tied keys; ``prompt`` = per prompt id (UKPConvArg1: a topic, debate + stance) the same way;
    ``global`` = one pool split round-robin the same way (the pooled ablation)."""
    if kind == "annotator":
        return strata_lib.round_robin(key, annotator, k)
    if kind == "prompt":
        if prompt is None:
            raise ValueError("strata kind 'prompt' needs the prompt id of every comparison")
        return strata_lib.round_robin(key, prompt, k)
    if kind == "global":
        return strata_lib.round_robin(key, None, k)
    raise ValueError(f"unknown strata kind '{kind}'; choose one of: annotator, prompt, global")


@dataclass
class TrainingData:
    """The training side of one run: labelled pairs, their strength keys and strata, and the batches."""

    pairs: TrainPairs
    key: np.ndarray  # strength rank key per pair (lower = stronger)
    stratum: np.ndarray  # stratum id per pair
    sampler: StratumBatchSampler

    @property
    def n_strata(self) -> int:
        return int(np.unique(self.stratum).shape[0])


def build_training_data(rc: LLMRunConfig, prep: Prepared) -> TrainingData:
    """Sample the seed's labelled pairs, compute strength keys and strata, and batch whole strata."""
    pairs = sample_train_pairs(prep.comparisons, prep.train_index, rc.seed, rc.fraction)
    if rc.strength == "time":  # annotations without a time cannot be ranked by it
        keep = np.isfinite(pairs.label_time)
        if not keep.all():
            log.warning("dropping %d training comparisons without time_spent", int((~keep).sum()))
            pairs = pairs.subset(keep)
    key = strength_keys(rc.strength, pairs.all_prefs, pairs.label_pref, pairs.label_time)
    if rc.shuffle_strength:  # rr_perm control: break the key–comparison link
        key = key[np.random.default_rng([rc.seed, 99]).permutation(key.shape[0])]
    prompt = np.array([prep.comparisons[i].prompt_id for i in pairs.index])
    stratum = build_strata(key, pairs.annotator, rc.strata.kind, rc.strata.k, prompt)
    sampler = StratumBatchSampler(stratum, rc.model.batch_size, seed=rc.seed)
    return TrainingData(pairs, key, stratum, sampler)


def make_batch_loss(spec: LossSpec, data: TrainingData, device: torch.device) -> BatchLoss:
    """The loss of one mini-batch as its spec asks: ``spec.inputs`` turns the batch's strength keys and
    strata into the loss's keyword arguments (nothing, strength and strata, or a rank plan)."""
    strength_t = torch.as_tensor(data.key, dtype=torch.float64).to(device)
    stratum_t = torch.as_tensor(data.stratum, dtype=torch.long).to(device)

    def loss_of(u_chosen: torch.Tensor, u_rejected: torch.Tensor, batch: Sequence[int]) -> torch.Tensor:
        b = torch.as_tensor(batch, dtype=torch.long, device=device)
        return spec.fn(u_chosen, u_rejected, **spec.inputs(strength_t[b], stratum_t[b]))

    return loss_of


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class Fit:
    """A trained reward model with its test-set rewards."""

    model: torch.nn.Module
    train_info: dict  # steps, epochs, final_loss
    r_a: np.ndarray  # rewards of completion A / B of the test comparisons
    r_b: np.ndarray
    reward_fn: RewardFn  # for benchmarks on raw text


def _epochs(m: LLMModelConfig, n_batches: int) -> int:
    """``epochs``, raised so that at least ``min_steps`` optimiser steps run."""
    return max(m.epochs, math.ceil(m.min_steps / max(n_batches, 1)))


def _train_loop(m: LLMModelConfig, desc: str, sampler: StratumBatchSampler,
                step_fn: Callable[[list[int]], torch.Tensor], params: list, progress: bool) -> dict:
    """AdamW over the sampler's batches for the configured epochs, stopping at ``max_steps``."""
    opt = torch.optim.AdamW(params, lr=m.lr, weight_decay=m.weight_decay)
    epochs = _epochs(m, len(sampler))
    steps, last = 0, float("nan")
    bar = tqdm(range(epochs), desc=f"train {desc}", disable=not progress, leave=False)
    for _ in bar:
        for batch in sampler:
            loss = step_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if m.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, m.grad_clip)
            opt.step()
            steps += 1
            last = float(loss.detach())
            if m.max_steps is not None and steps >= m.max_steps:
                break
        bar.set_postfix(loss=f"{last:.4f}")
        if m.max_steps is not None and steps >= m.max_steps:
            break
    return {"steps": steps, "epochs": epochs, "final_loss": last}


def _frozen_reward_fn(m: LLMModelConfig, head: RewardHead, device: torch.device, device_name: str) -> RewardFn:
    """Rewards of raw text through the frozen encoder and the head; the encoder loads on first use."""
    encoders: list[FrozenEncoder] = []

    def reward_fn(ps: Sequence[str], cs: Sequence[str]) -> np.ndarray:
        if not encoders:
            encoders.append(FrozenEncoder(m.name, cache_dir=None, device=device_name, progress=False))
        f = pair_features(encoders[0](list(ps)), encoders[0](list(cs)))
        with torch.no_grad():
            return head(torch.as_tensor(f, device=device)).cpu().numpy()

    return reward_fn


def _train_frozen(rc: LLMRunConfig, prep: Prepared, data: TrainingData, loss_of: BatchLoss,
                  device: torch.device) -> Fit:
    """An MLP head on the prepared frozen features of (prompt, completion)."""
    fa = torch.as_tensor(prep.feat_a, device=device)
    fb = torch.as_tensor(prep.feat_b, device=device)
    ci = torch.as_tensor(data.pairs.index, device=device)
    a_first = torch.as_tensor(data.pairs.chosen_is_a, device=device)
    x_chosen = torch.where(a_first[:, None], fa[ci], fb[ci])
    x_rejected = torch.where(a_first[:, None], fb[ci], fa[ci])
    head = RewardHead(fa.shape[1], rc.model.hidden, rc.model.dropout).to(device)
    head.train()

    def step(batch: list[int]) -> torch.Tensor:
        b = torch.as_tensor(batch, dtype=torch.long, device=device)
        return loss_of(head(x_chosen[b]), head(x_rejected[b]), batch)

    info = _train_loop(rc.model, rc.loss, data.sampler, step, list(head.parameters()), rc.progress)
    head.eval()
    with torch.no_grad():
        ti = torch.as_tensor(prep.test.index, device=device)
        r_a = head(fa[ti]).cpu().numpy()
        r_b = head(fb[ti]).cpu().numpy()
    return Fit(head, info, r_a, r_b, _frozen_reward_fn(rc.model, head, device, rc.device))


def _batched_reward_fn(model: SequenceRewardModel, batch_size: int) -> RewardFn:
    """Rewards of raw text from the fine-tuned model, ``batch_size`` pairs at a time, without gradients."""

    def reward_fn(ps: Sequence[str], cs: Sequence[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(ps), batch_size):
                out.append(model(ps[s : s + batch_size], cs[s : s + batch_size]).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    return reward_fn


def _train_finetune(rc: LLMRunConfig, prep: Prepared, data: TrainingData, loss_of: BatchLoss,
                    device: torch.device) -> Fit:
    """Every weight of a sequence classifier on (prompt, completion) token pairs."""
    m, comps, pairs = rc.model, prep.comparisons, data.pairs
    model = SequenceRewardModel(m.name, max_length=m.max_length, gradient_checkpointing=m.gradient_checkpointing,
                                dtype=m.dtype).to(device)
    model.train()
    prompts = [comps[i].prompt for i in pairs.index]
    chosen = [comps[i].completion_a if a else comps[i].completion_b for i, a in zip(pairs.index, pairs.chosen_is_a)]
    rejected = [comps[i].completion_b if a else comps[i].completion_a for i, a in zip(pairs.index, pairs.chosen_is_a)]

    def step(batch: list[int]) -> torch.Tensor:
        p = [prompts[j] for j in batch]
        r = model(p + p, [chosen[j] for j in batch] + [rejected[j] for j in batch])
        return loss_of(r[: len(batch)], r[len(batch) :], batch)

    info = _train_loop(m, rc.loss, data.sampler, step, [q for q in model.parameters() if q.requires_grad], rc.progress)
    model.eval()
    reward_fn = _batched_reward_fn(model, m.eval_batch_size)
    tp = [comps[i].prompt for i in prep.test.index]
    r_a = reward_fn(tp, [comps[i].completion_a for i in prep.test.index])
    r_b = reward_fn(tp, [comps[i].completion_b for i in prep.test.index])
    return Fit(model, info, r_a, r_b, reward_fn)


#: model.kind -> trainer (the choices of LLMModelConfig.kind).
TRAINERS: dict[str, Callable[[LLMRunConfig, Prepared, TrainingData, BatchLoss, torch.device], Fit]] = {
    "frozen": _train_frozen,
    "finetune": _train_finetune,
}


# --------------------------------------------------------------------------------------------
# Run and results
# --------------------------------------------------------------------------------------------


def _results(rc: LLMRunConfig, prep: Prepared, data: TrainingData, fit: Fit) -> dict:
    """The results dict of one run (without timing, the model and optional benchmarks)."""
    return {
        "experiment": rc.experiment,
        "dataset": prep.dataset,
        "simulated": prep.dataset == SIMULATED_LABEL,
        "loss": rc.loss,
        "strength": rc.strength,
        "strength_shuffled": rc.shuffle_strength,
        "strata": rc.strata.kind,
        "model": f"{rc.model.kind}:{rc.model.name}",
        "seed": rc.seed,
        "fraction": rc.fraction,
        "n_train": len(data.pairs),
        "n_train_dropped_ties": data.pairs.n_dropped_ties,
        "n_strata": data.n_strata,
        "n_test_dropped_ties": prep.test.n_dropped_ties,
        **fit.train_info,
        **evaluate_rewards(fit.r_a, fit.r_b, prep.test),
        **prep.info,
    }


def _rewards_of(prep: Prepared, fit: Fit, device: torch.device) -> RewardsOf:
    """Rewards of completions A and B of any comparisons: through the head on the prepared features
    (frozen encoder), or from the raw text (fine-tuned model)."""
    comps = prep.comparisons

    def rewards_of(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if prep.feat_a is not None and isinstance(fit.model, RewardHead):
            with torch.no_grad():
                return tuple(fit.model(torch.as_tensor(f[idx], device=device)).cpu().numpy()
                             for f in (prep.feat_a, prep.feat_b))
        ps = [comps[i].prompt for i in idx]
        return (np.asarray(fit.reward_fn(ps, [comps[i].completion_a for i in idx])),
                np.asarray(fit.reward_fn(ps, [comps[i].completion_b for i in idx])))

    return rewards_of


def run(cfg: Any, prepared: Optional[Prepared] = None) -> dict:
    """Train one reward model and evaluate it; returns the results dict (see module doc).

    ``cfg``: a Hydra config, a plain mapping or an :class:`LLMRunConfig`; ``prepared``: the shared
    :func:`prepare` output of a grid (built here when None). The model is under ``"_model"``.
    """
    t0 = time.perf_counter()
    rc = LLMRunConfig.from_config(cfg)
    configure_compute(rc.threads)
    spec = get_loss_spec(rc.loss)
    prep = prepared if prepared is not None else prepare(rc)
    data = build_training_data(rc, prep)
    torch.manual_seed(rc.seed)
    device = torch.device(rc.device)
    fit = TRAINERS[rc.model.kind](rc, prep, data, make_batch_loss(spec, data, device), device)
    results = _results(rc, prep, data, fit)
    if prep.extra_eval is not None:
        results.update(prep.extra_eval(_rewards_of(prep, fit, device)))
    if rc.eval.rewardbench:
        from rlpref.llm.rewardbench import load_rewardbench, score_rewardbench

        results["rewardbench"] = score_rewardbench(fit.reward_fn, load_rewardbench(rc.eval.rewardbench_path))
    results["seconds"] = round(time.perf_counter() - t0, 3)
    results["_model"] = fit.model
    return results


def _save_model(model: torch.nn.Module, out_dir: Path) -> None:
    """A fine-tuned model as a Hugging Face folder; a frozen-encoder head as safetensors (no pickle)."""
    if isinstance(model, SequenceRewardModel):
        model.model.save_pretrained(out_dir / "model")
        model.tokenizer.save_pretrained(out_dir / "model")
        return
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / "head.safetensors") as tmp:
        save_file(tensors, str(tmp))


def _write_results(results: dict, out_dir: Path, save_model: bool) -> Path:
    model = results.pop("_model", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    atomic_write_json(path, results)
    if save_model and model is not None:
        _save_model(model, out_dir)
    return path


def _summary(results: dict, path: Path) -> str:
    banner = "[SIMULATED DATA] " if results["simulated"] else ""
    msg = f"{banner}{results['experiment']}: test accuracy {results['accuracy']:.4f}"
    if "fold" in results:  # UKPConvArg1, cross-topic
        extra = [f"{k} {results[k]:.4f}" for k in ("accuracy_strict", "spearman", "pdc") if k in results]
        msg += f" vs majority vote; {', '.join(extra)}; held out fold {results['fold']}/{results['folds']}"
    elif "accuracy_true" in results:
        msg += f", vs hidden utility {results['accuracy_true']:.4f}"
    return msg + f" (n_train={results['n_train']}, n_test={results['n_test']}, {results['seconds']:.1f}s) -> {path}"


def _offline_if_local(rc: LLMRunConfig) -> None:
    """Local data and a local model need no hub: say so to huggingface_hub (unless the user already
    chose), so no library spends seconds probing a host it cannot reach."""
    if rc.data.source in ("file", "simulated", "ukpconvarg1") and Path(resolve_model(rc.model.name)).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cli_run(cfg: Any, out_dir: Path) -> float:
    """The CLI's work on a composed config: train, write ``results.json``, print the summary. A config
    error, missing data or a malformed file ends the process with one line on stderr and exit code 2
    (no traceback: each message names the key or file and the fix)."""
    try:
        rc = LLMRunConfig.from_config(cfg)  # fails here, before any work, on a bad key
        _offline_if_local(rc)
        results = run(rc)
    except (LLMConfigError, UKPDataUnavailable, UKPFormatError) as e:
        print(f"rlpref.llm.train: error: {' '.join(str(e).split())}", file=sys.stderr)  # as rlpref.cli_errors
        sys.exit(2)
    path = _write_results(results, Path(out_dir), rc.save_model)
    print(f"dataset: {results['dataset']}")
    print(_summary(results, path))
    return float(results["accuracy"])


def _main() -> None:
    import hydra

    from rlpref.cli_errors import one_line_errors, task_errors
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    @hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[2] / "conf" / "llm"), config_name="config")
    def main(cfg: DictConfig) -> float:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        log.info("config:\n%s", OmegaConf.to_yaml(cfg))
        with task_errors("rlpref.llm.train"):
            return cli_run(cfg, HydraConfig.get().runtime.output_dir)

    with one_line_errors("rlpref.llm.train"):
        main()


if __name__ == "__main__":
    _main()
