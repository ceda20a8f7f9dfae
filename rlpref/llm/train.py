"""Train a text reward model on pairwise preferences: ``python -m rlpref.llm.train experiment=rr_agree``.

Pipeline: data (MultiPref from a file or the hub, or the labelled simulated stand-in) → deterministic
train/test split by prompt → training labels from one random non-tie annotation per comparison
(seeded; the first ``fraction`` of a seeded permutation) → strength rank keys → strata per
annotator, split round-robin so no stratum holds tied keys → whole-stratum batches → reward model
trained with ``rlpref.losses`` → test accuracy against the aggregated preference (and against the
hidden utility on simulated data). Writes ``results.json`` to the Hydra run directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from rlpref import strata as strata_lib
from rlpref.artifacts import atomic_write_json
from rlpref.losses import USES_STRENGTH, get_loss
from rlpref.llm import data as D
from rlpref.llm.evaluate import evaluate_rewards
from rlpref.llm.models import FrozenEncoder, RewardHead, SequenceRewardModel, pair_features
from rlpref.llm.sampler import StratumBatchSampler
from rlpref.llm.strength import strength_keys
from rlpref.runtime import pin_threads

log = logging.getLogger(__name__)

__all__ = ["Prepared", "build_strata", "prepare", "run"]

SIMULATED_LABEL = (
    "SIMULATED multi-annotator preferences (rlpref-simulated) over real Python-documentation text "
    "with a hidden utility — NOT MultiPref"
)


def _get(cfg, dotted: str, default=None):
    cur = cfg
    for part in dotted.split("."):
        if cur is None:
            return default
        try:
            cur = cur[part] if part in cur else None
        except TypeError:
            cur = getattr(cur, part, None)
    return default if cur is None else cur


def _hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def simulated_path(cfg) -> Path:
    """Build (once) and return the simulated MultiPref-schema file in the cache directory."""
    sim = dict(_get(cfg, "data.simulated", {}) or {})
    params = {
        "n_comparisons": int(sim.get("n_comparisons", 5000)),
        "n_normal": int(sim.get("n_normal", 16)),
        "n_expert": int(sim.get("n_expert", 8)),
        "seed": int(sim.get("seed", 0)),
        "max_doc_items": int(sim.get("max_doc_items", 600)),
    }
    corpus = D.text_corpus(params["max_doc_items"])
    key = _hash_json({"params": params, "corpus": _hash_json(corpus), "v": 1})
    path = Path(cfg.cache_dir) / f"simulated-multipref-{key}.jsonl"
    if not path.is_file():
        log.info("building the simulated data set %s", path)
        encoder = FrozenEncoder("minilm", cache_dir=cfg.cache_dir, progress=bool(cfg.progress))
        rows = D.build_simulated_rows(encoder, corpus=corpus, progress=bool(cfg.progress), **params)
        D.write_jsonl_atomic(rows, path)
    return path


def load_comparisons(cfg) -> tuple[list[D.Comparison], str]:
    source = str(_get(cfg, "data.source", "auto"))
    path = _get(cfg, "data.path")
    kw = dict(annotators=str(_get(cfg, "data.annotators", "all")))
    if source == "auto":
        if path:
            source = "file"
        elif D.hub_reachable():
            source = "hub"
        else:
            log.warning("no network and no data.path: using the SIMULATED data set (not MultiPref)")
            source = "simulated"
    if source == "file":
        if not path:
            raise ValueError("data.source=file needs data.path=<MultiPref .jsonl/.json/.parquet file>")
        comps = D.load_multipref(str(path), **kw)
        label = f"MultiPref schema from file {path}"
    elif source == "hub":
        hub_id = str(_get(cfg, "data.hub_id", "allenai/multipref"))
        comps = D.load_multipref(None, hub_id=hub_id, hub_config=str(_get(cfg, "data.hub_config", "default")), **kw)
        label = f"{hub_id} (Hugging Face hub)"
    elif source == "simulated":
        comps = D.load_multipref(str(simulated_path(cfg)), **kw)
        label = SIMULATED_LABEL
    else:
        raise ValueError(f"unknown data.source '{source}'; choose one of: auto, file, hub, simulated")
    if any(c.source == D.SIMULATED_SOURCE for c in comps):
        label = SIMULATED_LABEL
    return comps, label


@dataclass
class Prepared:
    """Everything that does not depend on seed, fraction or loss: reused across a grid."""

    comparisons: list
    dataset: str
    train_index: list
    test: D.TestSet
    feat_a: Optional[np.ndarray] = None  # frozen features of (prompt, completion_a), all comparisons
    feat_b: Optional[np.ndarray] = None


def prepare(cfg) -> Prepared:
    comps, label = load_comparisons(cfg)
    train_idx, test_idx = D.split_by_prompt(
        comps, float(_get(cfg, "data.test_fraction", 0.2)), str(_get(cfg, "data.split_salt", "rlpref-llm"))
    )
    test = D.make_test_set(comps, test_idx)
    prep = Prepared(comps, label, train_idx, test)
    if str(cfg.model.kind) == "frozen":
        enc = FrozenEncoder(
            str(cfg.model.name),
            max_seq_length=int(_get(cfg, "model.max_seq_length", 256)),
            batch_size=int(_get(cfg, "model.encode_batch_size", 64)),
            cache_dir=cfg.cache_dir,
            device=str(cfg.device),
            progress=bool(cfg.progress),
        )
        prompts = sorted({c.prompt for c in comps})
        completions = sorted({t for c in comps for t in (c.completion_a, c.completion_b)})
        e_p = dict(zip(prompts, enc(prompts)))
        e_c = dict(zip(completions, enc(completions)))
        p = np.stack([e_p[c.prompt] for c in comps])
        prep.feat_a = pair_features(p, np.stack([e_c[c.completion_a] for c in comps]))
        prep.feat_b = pair_features(p, np.stack([e_c[c.completion_b] for c in comps]))
    return prep


# --------------------------------------------------------------------------------------------
# Strength and strata
# --------------------------------------------------------------------------------------------


def build_strata(key: np.ndarray, annotator: np.ndarray, kind: str = "annotator", k: Optional[int] = None) -> np.ndarray:
    """Stratum ids [N]: ``annotator`` = per annotator, split round-robin by strength so no stratum
    holds tied keys; ``global`` = one pool split round-robin the same way (the pooled ablation)."""
    if kind == "annotator":
        return strata_lib.round_robin(key, annotator, k)
    if kind == "global":
        return strata_lib.round_robin(key, None, k)
    raise ValueError(f"unknown strata kind '{kind}'; choose one of: annotator, global")


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _epochs(cfg_model, n_batches: int) -> int:
    epochs = int(_get(cfg_model, "epochs", 1))
    min_steps = int(_get(cfg_model, "min_steps", 0) or 0)
    return max(epochs, math.ceil(min_steps / max(n_batches, 1)))


def _train_loop(cfg, sampler, step_fn, params, progress: bool) -> dict:
    opt = torch.optim.AdamW(params, lr=float(cfg.model.lr), weight_decay=float(_get(cfg, "model.weight_decay", 0.0)))
    clip = float(_get(cfg, "model.grad_clip", 0.0) or 0.0)
    max_steps = _get(cfg, "model.max_steps")
    epochs = _epochs(cfg.model, len(sampler))
    steps, last = 0, float("nan")
    bar = tqdm(range(epochs), desc=f"train {cfg.loss}", disable=not progress, leave=False)
    for _ in bar:
        for batch in sampler:
            loss = step_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            steps += 1
            last = float(loss.detach())
            if max_steps is not None and steps >= int(max_steps):
                break
        bar.set_postfix(loss=f"{last:.4f}")
        if max_steps is not None and steps >= int(max_steps):
            break
    return {"steps": steps, "epochs": epochs, "final_loss": last}


def run(cfg, prepared: Optional[Prepared] = None) -> dict:
    """Train one reward model and evaluate it; returns the results dict (see module doc)."""
    t0 = time.perf_counter()
    pin_threads(int(_get(cfg, "threads", 2)))
    seed = int(cfg.seed)
    loss_name = str(cfg.loss)
    loss_fn = get_loss(loss_name)
    prep = prepared if prepared is not None else prepare(cfg)
    comps = prep.comparisons

    pairs = D.sample_train_pairs(comps, prep.train_index, seed, float(cfg.fraction))
    kind = str(cfg.strength)
    if kind == "time":  # annotations without a time cannot be ranked by it
        keep = np.isfinite(pairs.label_time)
        if not keep.all():
            log.warning("dropping %d training comparisons without time_spent", int((~keep).sum()))
            pairs = pairs.subset(keep)
    key = strength_keys(kind, pairs.all_prefs, pairs.label_pref, pairs.label_time)
    if bool(_get(cfg, "shuffle_strength", False)):  # rr_perm control: break the key–comparison link
        key = key[np.random.default_rng([seed, 99]).permutation(key.shape[0])]
    stratum = build_strata(key, pairs.annotator, str(_get(cfg, "strata.kind", "annotator")), _get(cfg, "strata.k"))
    sampler = StratumBatchSampler(stratum, int(cfg.model.batch_size), seed=seed)
    strength_t = torch.as_tensor(key, dtype=torch.float64)
    stratum_t = torch.as_tensor(stratum, dtype=torch.long)
    torch.manual_seed(seed)
    progress = bool(cfg.progress)
    device = torch.device(str(cfg.device))

    def loss_of(uc, ur, batch):
        b = torch.as_tensor(batch, dtype=torch.long)
        if loss_name in USES_STRENGTH:
            return loss_fn(uc, ur, strength_t[b].to(device), stratum_t[b].to(device))
        return loss_fn(uc, ur)

    model_kind = str(cfg.model.kind)
    if model_kind == "frozen":
        fa = torch.as_tensor(prep.feat_a, device=device)
        fb = torch.as_tensor(prep.feat_b, device=device)
        ci = torch.as_tensor(pairs.index, device=device)
        a_first = torch.as_tensor(pairs.chosen_is_a, device=device)
        x_chosen = torch.where(a_first[:, None], fa[ci], fb[ci])
        x_rejected = torch.where(a_first[:, None], fb[ci], fa[ci])
        head = RewardHead(fa.shape[1], int(_get(cfg, "model.hidden", 128)), float(_get(cfg, "model.dropout", 0.1))).to(device)
        head.train()

        def step(batch):
            b = torch.as_tensor(batch, dtype=torch.long, device=device)
            return loss_of(head(x_chosen[b]), head(x_rejected[b]), batch)

        train_info = _train_loop(cfg, sampler, step, list(head.parameters()), progress)
        head.eval()
        with torch.no_grad():
            ti = torch.as_tensor(prep.test.index, device=device)
            r_a = head(fa[ti]).cpu().numpy()
            r_b = head(fb[ti]).cpu().numpy()
        model_obj = head
        reward_fn = None
    elif model_kind == "finetune":
        model_obj = SequenceRewardModel(
            str(cfg.model.name),
            max_length=int(_get(cfg, "model.max_length", 512)),
            gradient_checkpointing=bool(_get(cfg, "model.gradient_checkpointing", False)),
            dtype=_get(cfg, "model.dtype"),
        ).to(device)
        model_obj.train()
        prompts = [comps[i].prompt for i in pairs.index]
        chosen = [comps[i].completion_a if a else comps[i].completion_b for i, a in zip(pairs.index, pairs.chosen_is_a)]
        rejected = [comps[i].completion_b if a else comps[i].completion_a for i, a in zip(pairs.index, pairs.chosen_is_a)]

        def step(batch):
            p = [prompts[j] for j in batch]
            r = model_obj(p + p, [chosen[j] for j in batch] + [rejected[j] for j in batch])
            return loss_of(r[: len(batch)], r[len(batch) :], batch)

        train_info = _train_loop(cfg, sampler, step, [q for q in model_obj.parameters() if q.requires_grad], progress)
        model_obj.eval()
        eb = int(_get(cfg, "model.eval_batch_size", 32))

        def reward_fn(ps, cs):
            out = []
            with torch.no_grad():
                for s in range(0, len(ps), eb):
                    out.append(model_obj(ps[s : s + eb], cs[s : s + eb]).cpu().numpy())
            return np.concatenate(out) if out else np.zeros(0)

        tp = [comps[i].prompt for i in prep.test.index]
        r_a = reward_fn(tp, [comps[i].completion_a for i in prep.test.index])
        r_b = reward_fn(tp, [comps[i].completion_b for i in prep.test.index])
    else:
        raise ValueError(f"unknown model.kind '{model_kind}'; choose one of: frozen, finetune")

    results = {
        "experiment": str(_get(cfg, "name", loss_name)),
        "dataset": prep.dataset,
        "simulated": prep.dataset == SIMULATED_LABEL,
        "loss": loss_name,
        "strength": kind,
        "strength_shuffled": bool(_get(cfg, "shuffle_strength", False)),
        "strata": str(_get(cfg, "strata.kind", "annotator")),
        "model": f"{model_kind}:{cfg.model.name}",
        "seed": seed,
        "fraction": float(cfg.fraction),
        "n_train": len(pairs),
        "n_train_dropped_ties": pairs.n_dropped_ties,
        "n_strata": int(np.unique(stratum).shape[0]),
        "n_test_dropped_ties": prep.test.n_dropped_ties,
        **train_info,
        **evaluate_rewards(r_a, r_b, prep.test),
    }
    if bool(_get(cfg, "eval.rewardbench", False)):
        from rlpref.llm.rewardbench import load_rewardbench, score_rewardbench

        if reward_fn is None:
            enc = FrozenEncoder(str(cfg.model.name), cache_dir=None, device=str(cfg.device), progress=False)

            def reward_fn(ps, cs):
                f = pair_features(enc(list(ps)), enc(list(cs)))
                with torch.no_grad():
                    return head(torch.as_tensor(f, device=device)).cpu().numpy()

        results["rewardbench"] = score_rewardbench(reward_fn, load_rewardbench(_get(cfg, "eval.rewardbench_path")))
    results["seconds"] = round(time.perf_counter() - t0, 3)
    results["_model"] = model_obj
    return results


def _write_results(results: dict, out_dir: Path, save_model: bool) -> Path:
    model_obj = results.pop("_model", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    atomic_write_json(path, results)
    if save_model and model_obj is not None:
        if isinstance(model_obj, SequenceRewardModel):
            model_obj.model.save_pretrained(out_dir / "model")
            model_obj.tokenizer.save_pretrained(out_dir / "model")
        else:
            torch.save(model_obj.state_dict(), out_dir / "head.pt")
    return path


def _main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    @hydra.main(version_base="1.3", config_path="../../conf/llm", config_name="config")
    def main(cfg: DictConfig) -> float:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        log.info("config:\n%s", OmegaConf.to_yaml(cfg))
        results = run(cfg)
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        path = _write_results(results, out_dir, bool(cfg.save_model))
        banner = "[SIMULATED DATA] " if results["simulated"] else ""
        msg = f"{banner}{results['experiment']}: test accuracy {results['accuracy']:.4f}"
        if "accuracy_true" in results:
            msg += f", vs hidden utility {results['accuracy_true']:.4f}"
        msg += f" (n_train={results['n_train']}, n_test={results['n_test']}, {results['seconds']:.1f}s) -> {path}"
        print(f"dataset: {results['dataset']}")
        print(msg)
        return float(results["accuracy"])

    main()


if __name__ == "__main__":
    _main()
