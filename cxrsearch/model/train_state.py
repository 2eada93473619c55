"""The resumable training state under ``<out>/train_state/`` (never pickled).

After every epoch the trainer writes

- ``state-<epoch>.safetensors``: every tensor needed to continue exactly: the trainable weights
  (``weights.<name>``; frozen towers are not repeated, the trainer checks them by fingerprint), the
  optimizer's per-parameter state (``optim.<index>.<key>``, e.g. AdamW's ``exp_avg``,
  ``exp_avg_sq``, ``step``) and the torch RNG state (``rng.torch``, ``rng.cuda`` on a GPU);
- ``state.json``: the epoch just finished, the best validation metric so far and its epoch, the
  epochs without improvement, the per-epoch history, the options and data fingerprint the run was
  started with, and the name of the safetensors file above.

``state.json`` is replaced atomically *after* its safetensors file is complete, so an interruption at
any moment leaves a consistent state (the previous epoch's, at worst). The learning-rate schedule is a
pure function of the global step and data shuffling a pure function of ``(seed, epoch)``, so neither
needs saving.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrsearch.errors import ModelError

STATE_DIR = "train_state"
STATE_JSON = "state.json"


@dataclass(frozen=True)
class SavedState:
    """What :func:`load_train_state` read back (``meta``: the JSON, minus the file name)."""

    meta: dict[str, Any]
    path: Path


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_train_state(out_dir: Path, weights: dict, optimizer, meta: dict[str, Any]) -> Path:
    """Write the state after epoch ``meta["epoch"]``; returns the ``state.json`` path.

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
    _atomic_write_text(json_path, json.dumps({**meta, "weights": weights_name}, indent=2, sort_keys=True))
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
