"""Typed records of a training run: progress events (:class:`TrainEvent`, a
:class:`~cxrsearch.progress.ProgressEvent`), per-epoch reports, the final result, and the
metrics written into the checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrsearch.progress import ProgressEvent

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from cxrsearch.model.metrics import Thresholds
    from cxrsearch.model.train_data import TrainingData
    from cxrsearch.model.train_loop import EpochLosses
    from cxrsearch.model.train_state import TrainState


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch: mean training losses (a term is ``None`` if it never applied, e.g.
    ``contrastive`` without images), the val macro AUROC, whether it improved on the best so far
    (and so was saved as the checkpoint), the learning rate at the epoch's end, wall seconds."""

    epoch: int
    train_loss: float
    classification: float
    contrastive: float | None
    alignment: float | None
    text_supcon: float | None
    val_macro_auroc: float
    improved: bool
    lr: float
    seconds: float
    val_image_macro_auroc: float | None = None
    """From the radiographs alone (the report withheld); ``None`` when val has no radiographs."""

    @classmethod
    def build(
        cls,
        epoch: int,
        losses: EpochLosses,
        auroc: float,
        improved: bool,
        lr: float,
        seconds: float,
        image_auroc: float | None = None,
    ) -> EpochReport:
        return cls(
            epoch,
            losses.total,
            losses.classification,
            losses.contrastive,
            losses.alignment,
            losses.text_supcon,
            auroc,
            improved,
            lr,
            seconds,
            image_auroc,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochReport:
        return cls(**values)


@dataclass(frozen=True)
class TrainEvent(ProgressEvent):
    """A training progress event. ``stage``: ``"data"``, ``"model"`` (``message``), ``"features"``
    (``done``/``total`` texts or images, ``message`` says which: ``"text features"`` or ``"image
    features"``), ``"epoch_start"`` (``total`` batches), ``"step"`` (``done``/``total`` batches,
    ``loss``), ``"validate"``, ``"epoch_end"`` (``report``; the training state is already saved),
    ``"done"`` (``message``: the checkpoint directory). ``epoch``: the epoch it belongs to (0 before
    the first)."""

    epoch: int = 0
    loss: float | None = None
    report: EpochReport | None = None


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`~cxrsearch.model.train.train`.

    Attributes:
        checkpoint: the directory holding the best epoch's ``model.safetensors`` + ``config.json``.
        best_epoch / best_val_macro_auroc: the epoch saved and its val macro AUROC.
        last_epoch: the last epoch trained (over all sessions of a resumed run).
        stopped_early: early stopping ended the run before ``epochs``.
        resumed_from: the epoch this session resumed after (``None`` for a fresh run).
        history: every epoch's report, resumed sessions included.
        n_train / n_val: samples trained / validated on; n_skipped: studies with no text and no image;
        n_train_with_images: train samples that had at least one paired radiograph.
        data_fingerprint: see :mod:`cxrsearch.model.train_data`.
        seconds: wall time of this session (data loading and feature caching included).
    """

    checkpoint: Path
    best_epoch: int
    best_val_macro_auroc: float
    last_epoch: int
    stopped_early: bool
    resumed_from: int | None
    history: tuple[EpochReport, ...]
    n_train: int
    n_val: int
    n_skipped: int
    n_train_with_images: int
    data_fingerprint: str
    seconds: float


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def checkpoint_metrics(
    data: TrainingData, probs: np.ndarray, thresholds: Thresholds, state: TrainState
) -> dict[str, Any]:
    """The ``metrics`` block of a checkpoint saved at the best epoch (val numbers only)."""
    from cxrsearch.model.metrics import f1_at, per_label_metrics

    per_label = per_label_metrics(data.val.targets, probs, data.labels)
    f1 = f1_at(data.val.targets, probs, thresholds.values)
    image_auroc = state.best_image_auroc
    return {
        "val_macro_auroc": state.best_val_auroc,
        "val_image_macro_auroc": _clean(image_auroc) if image_auroc is not None else None,
        "best_epoch_chosen_by": (
            "mean of the fused and the image-only val macro AUROC"
            if image_auroc is not None
            else "fused val macro AUROC"
        ),
        "best_epoch": state.best_epoch,
        "thresholds_tuned_on": "val",
        "threshold_rule": "predict a label when prob >= threshold; threshold maximises val F1 per label",
        "threshold_fallback_labels": list(thresholds.fallback),
        "val_per_label": {
            m.label: {
                "auroc": _clean(m.auroc),
                "average_precision": _clean(m.average_precision),
                "positives": m.positives,
                "threshold": t,
                "f1": _clean(f),
            }
            for m, t, f in zip(per_label, thresholds.values, f1)
        },
        "n_train": len(data.train),
        "n_val": len(data.val),
        "n_skipped": data.skipped,
        "n_train_with_images": data.train.n_with_images,
        "history": [{k: _clean(v) if isinstance(v, float) else v for k, v in h.items()} for h in state.history],
    }
