"""The resumable training state under ``<out>/train_state/`` (never pickled).

After every epoch the trainer writes

- ``state-<epoch>.safetensors``: every tensor needed to continue exactly: the trainable weights
  (``weights.<name>``; frozen towers are not repeated, the trainer checks them by fingerprint), the
  optimizer's per-parameter state (``optim.<index>.<key>``, e.g. AdamW's ``exp_avg``,
  ``exp_avg_sq``, ``step``) and the torch RNG state (``rng.torch``, ``rng.cuda`` on a GPU);
- ``state.json``: the epoch just finished, the best validation metric so far and its epoch, the
  epochs without improvement, the per-epoch history, the options and data fingerprint the run was
  started with, and the name of the safetensors file above (:meth:`TrainState.to_meta`: the JSON of
  :class:`TrainState`, the trainer's mutable state).

``state.json`` is replaced atomically *after* its safetensors file is complete, so an interruption at
any moment leaves a consistent state (the previous epoch's, at worst). The learning-rate schedule is a
pure function of the global step and data shuffling a pure function of ``(seed, epoch)``, so neither
needs saving.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrsearch.errors import ModelError
from cxrsearch.files import write_atomic

STATE_DIR = "train_state"
STATE_JSON = "state.json"


@dataclass(frozen=True)
class SavedState:
    """What :func:`load_train_state` read back (``meta``: the JSON, minus the file name)."""

    meta: dict[str, Any]
    path: Path


@dataclass
class TrainState:
    """The mutable state of a training run: what ``state.json`` holds (:meth:`to_meta`), and what
    ``--resume`` restores (:meth:`restore_progress`).

    ``options``, ``data_fingerprint`` and ``tower_fingerprint`` identify the run (``--resume`` refuses
    a state whose identity differs); the others track its progress: the last finished ``epoch``, the
    best selection score so far (``best_metric``) with its epoch, fused val AUROC (``best_auroc``)
    and image-only val AUROC (``best_image_auroc``), the epochs since the last improvement
    (``bad_epochs``), whether early stopping ended the run, every epoch's
    :class:`~cxrsearch.model.train_report.EpochReport` as JSON (``history``) and the wall seconds of
    all sessions so far. ``best_auroc is None``: not recorded (no epoch finished yet, or a state
    written before these were saved; then ``best_metric`` is the fused val AUROC).
    """

    options: dict[str, Any]
    data_fingerprint: str
    tower_fingerprint: str | None
    epoch: int = 0
    best_metric: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    best_auroc: float | None = None
    best_image_auroc: float | None = None

    @property
    def best_val_auroc(self) -> float | None:
        """The fused val macro AUROC of the best epoch (``None`` before the first epoch)."""
        return self.best_auroc if self.best_auroc is not None else self.best_metric

    def record_best(self, epoch: int, score: float, auroc: float, image_auroc: float | None) -> None:
        """``epoch`` improved on the best so far (``score``: its selection score)."""
        self.best_metric, self.best_auroc, self.best_image_auroc = score, auroc, image_auroc
        self.best_epoch, self.bad_epochs = epoch, 0

    def record_no_improvement(self, patience: int) -> None:
        """An epoch did not improve; early stopping after ``patience`` such epochs in a row."""
        self.bad_epochs += 1
        self.stopped_early = self.bad_epochs >= patience

    def to_meta(self) -> dict[str, Any]:
        """The JSON of ``state.json`` (less the weights file name, which :func:`save_train_state` adds)."""
        meta: dict[str, Any] = {
            "epoch": self.epoch,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "seconds": self.seconds,
            "options": self.options,
            "data_fingerprint": self.data_fingerprint,
            "tower_fingerprint": self.tower_fingerprint,
        }
        if self.best_auroc is not None:  # both recorded together; absent from older states until an improvement
            meta.update(best_auroc=self.best_auroc, best_image_auroc=self.best_image_auroc)
        return meta

    def restore_progress(self, saved: SavedState) -> None:
        """Take the progress of ``saved`` (its identity is the caller's to check first)."""
        meta = saved.meta
        self.epoch = meta["epoch"]
        self.best_metric = meta["best_metric"]
        self.best_epoch = meta["best_epoch"]
        self.bad_epochs = meta["bad_epochs"]
        self.stopped_early = meta["stopped_early"]
        self.history = meta["history"]
        self.seconds = meta["seconds"]
        if "best_auroc" in meta:
            self.best_auroc = meta["best_auroc"]
        if "best_image_auroc" in meta:
            self.best_image_auroc = meta["best_image_auroc"]


def save_train_state(out_dir: Path, weights: dict, optimizer, meta: dict[str, Any]) -> Path:
    """Write the state after epoch ``meta["epoch"]``; returns the ``state.json`` path.

    ``meta``: the JSON to write (the trainer's :meth:`TrainState.to_meta`).

    ``weights``: name -> tensor of everything trainable the trainer must restore (e.g.
    ``model.<param>``, ``loss.<param>``); ``optimizer``: a ``torch.optim.Optimizer``.
    """
    import torch
    from safetensors.torch import save_file

    state_dir = Path(out_dir) / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"weights.{k}": v.detach().cpu().contiguous() for k, v in weights.items()}
    for index, per_param in optimizer.state_dict()["state"].items():
        for key, value in per_param.items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    weights_name = f"state-{int(meta['epoch'])}.safetensors"
    tmp = state_dir / (weights_name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, state_dir / weights_name)
    json_path = state_dir / STATE_JSON
    write_atomic(json_path, json.dumps({**meta, "weights": weights_name}, indent=2, sort_keys=True))
    for old in state_dir.glob("state-*.safetensors"):
        if old.name != weights_name:
            old.unlink()
    return json_path


def read_train_state_meta(out_dir: Path) -> SavedState | None:
    """The saved ``state.json`` of ``out_dir``, or ``None`` when no training state exists there."""
    json_path = Path(out_dir) / STATE_DIR / STATE_JSON
    if not json_path.is_file():
        return None
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable training state ({exc})", json_path) from exc
    return SavedState(meta=meta, path=json_path)


def load_train_state(saved: SavedState, optimizer) -> dict:
    """Restore the optimizer state and the torch RNG from ``saved``; return the saved ``weights``
    (name -> tensor, as given to :func:`save_train_state`) for the caller to load."""
    import torch
    from safetensors.torch import load_file

    weights = saved.path.parent / str(saved.meta.get("weights", ""))
    if not weights.is_file():
        raise ModelError(f"training state names missing weights {weights.name}", saved.path)
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises several error types for damaged files
        raise ModelError(f"damaged training state ({exc})", weights) from None
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            optim_state.setdefault(int(index), {})[name] = value
    current = optimizer.state_dict()
    if optim_state and max(optim_state) >= len([p for g in current["param_groups"] for p in g["params"]]):
        raise ModelError("training state has optimizer entries for more parameters than the model has", weights)
    current["state"] = optim_state
    optimizer.load_state_dict(current)
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return {k[len("weights.") :]: v for k, v in tensors.items() if k.startswith("weights.")}
