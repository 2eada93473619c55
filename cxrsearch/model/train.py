"""``train(TrainOptions) -> TrainResult``: fit a fusion model on the Open-i train split.

- Studies are split by the data layer (study-level); the model trains on ``train``, every epoch is
  scored on ``val`` (macro AUROC over labels with both classes in val), and ``test`` is never read.
- The best epoch's model is written to ``<out>`` (``model.safetensors`` + ``config.json`` via
  :func:`~cxrsearch.model.checkpoint.save_checkpoint`) with per-label thresholds tuned on that
  epoch's **val** predictions, the val metrics and the training-data fingerprint.
- Early stopping after ``patience`` epochs without a val improvement (> ``1e-4``).
- After every epoch a training state is written to ``<out>/train_state/`` (see
  :mod:`~cxrsearch.model.train_state`); ``resume=True`` continues from it and ends where an
  uninterrupted run would. Without ``resume``, an ``<out>`` that already holds a run is refused.
- ``freeze_encoders``: tower outputs are computed once and cached (see
  :mod:`~cxrsearch.model.feature_cache`); only projections, fusion and heads train. Otherwise the
  towers are fine-tuned at ``lr * tower_lr_ratio``.
- Optimiser: AdamW (no weight decay on biases, norms, null tokens and the temperature), linear
  warm-up over ``warmup_fraction`` of the steps then cosine decay to zero, gradient clipping.
- Progress goes to the ``progress`` callback as :class:`TrainEvent` (a
  :class:`~cxrsearch.progress.ProgressEvent`); the library never prints.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch  # already loaded with cxrsearch.model.losses

from cxrsearch import paths
from cxrsearch.errors import ConfigError
from cxrsearch.model.build import create_model
from cxrsearch.model.checkpoint import save_checkpoint
from cxrsearch.model.config import get_config
from cxrsearch.model.feature_cache import module_fingerprint
from cxrsearch.model.losses import FusionLoss, LossConfig
from cxrsearch.model.metrics import macro_auroc, tune_thresholds
from cxrsearch.model.train_data import load_training_data
from cxrsearch.model.train_loop import (
    EpochLosses,
    SplitInputs,
    plan_batches,
    predict,
    predict_image_only,
    train_epoch,
)
from cxrsearch.model.train_report import EpochReport, TrainEvent, TrainResult, checkpoint_metrics
from cxrsearch.model.train_state import (
    SavedState,
    TrainState,
    load_train_state,
    read_train_state_meta,
    save_train_state,
)
from cxrsearch.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.config import ModelConfig
    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.train_data import TrainingData

_RESUME_KEYS = (
    "config",
    "batch_size",
    "lr",
    "tower_lr_ratio",
    "weight_decay",
    "warmup_fraction",
    "freeze_encoders",
    "seed",
    "text_encoder",
    "image_encoder",
    "limit",
    "modality_dropout",
    "grad_clip",
    "finding_sentences",
    "loss",
)


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``cxrsearch train`` can set (see the module docstring for what each does)."""

    data: Path
    config: str
    out: Path
    images: Path | None = None
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    tower_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    patience: int = 4
    freeze_encoders: bool = False
    resume: bool = False
    device: str = "cpu"
    seed: int = 0
    text_encoder: str | None = None
    image_encoder: str | None = None
    limit: int | None = None
    modality_dropout: float = 0.3
    finding_sentences: bool = True
    """Also train on the train reports' sentences that affirm a label (:mod:`.train_data`): short
    queries then read like training texts (docs/evaluation.md: short-query P@10 0.744 -> 0.773)."""
    eval_batch_size: int = 128
    loss: LossConfig = field(default_factory=LossConfig)

    def check(self) -> None:
        """Raise :class:`ConfigError` for any out-of-range option."""
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 1 or self.eval_batch_size < 1:
            raise ConfigError("--epochs and --patience must be >= 1 and --batch-size >= 2")
        if not (math.isfinite(self.lr) and self.lr > 0) or not 0 <= self.tower_lr_ratio <= 1:
            raise ConfigError(f"--lr must be a positive number (got {self.lr}) and tower_lr_ratio in [0, 1]")
        if (
            self.weight_decay < 0
            or not 0 <= self.warmup_fraction < 1
            or self.grad_clip < 0
            or not 0 <= self.modality_dropout <= 1
        ):
            raise ConfigError(
                "weight_decay and grad_clip must be >= 0, warmup_fraction in [0, 1), modality_dropout in [0, 1]"
            )
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"--device must be cpu or cuda, not {self.device!r}")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError("--out exists and is not a directory", path=self.out)

    def identity(self) -> dict[str, Any]:
        """The options that must not change across ``--resume`` (JSON). The data are checked by
        fingerprint instead, so the same reports may be resumed from another path."""
        values = {k: getattr(self, k) for k in _RESUME_KEYS}
        values["loss"] = dataclasses.asdict(self.loss)
        return values

    def describe(self) -> dict[str, Any]:
        """Every option as JSON (recorded in the checkpoint's ``extra.training``)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "loss"}
        return {**{k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}, **self.identity()}


_MIN_IMPROVEMENT = 1e-4
"""A val selection score must beat the best so far by more than this to count as an improvement."""


def _param_groups(model, loss_fn, options: TrainOptions) -> list[dict]:
    towers = {id(p) for p in model.tower_parameters()}
    decay, plain, tower = [], [], []
    for name, p in list(model.named_parameters()) + [("loss." + n, p) for n, p in loss_fn.named_parameters()]:
        if not p.requires_grad:
            continue
        if id(p) in towers:
            tower.append(p)
        elif p.ndim >= 2 and "null_" not in name:
            decay.append(p)
        else:
            plain.append(p)
    groups = [
        {"params": decay, "weight_decay": options.weight_decay, "base_lr": options.lr},
        {"params": plain, "weight_decay": 0.0, "base_lr": options.lr},
    ]
    if tower:
        groups.append(
            {"params": tower, "weight_decay": options.weight_decay, "base_lr": options.lr * options.tower_lr_ratio}
        )
    return groups


def _schedule(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def selection_score(
    model: FusionModel, val_inputs: SplitInputs, data: TrainingData, batch_size: int, auroc: float
) -> tuple[float, float | None]:
    """``(score, image-only AUROC)``: the val number the best epoch is chosen by. With radiographs in
    val it is the mean of the fused and the image-only macro AUROC: templated or informative reports
    let the fused prediction saturate early while the image side is still learning, and image
    queries rest on the image side alone. Without radiographs, the fused AUROC."""
    if not any(data.val.images):
        return auroc, None
    rows, image_probs = predict_image_only(model, val_inputs, batch_size)
    image_auroc = macro_auroc(data.val.targets[rows], image_probs)
    if image_auroc != image_auroc:  # nan: no label with both classes among the imaged studies
        return auroc, None
    return (auroc + image_auroc) / 2, image_auroc


def _trainable(model, loss_fn) -> dict:
    weights = {f"model.{n}": p for n, p in model.named_parameters() if p.requires_grad}
    weights.update({f"loss.{n}": t for n, t in loss_fn.state_dict().items()})
    return weights


def train(options: TrainOptions, progress: ProgressCallback | None = None) -> TrainResult:
    """Train as ``options`` say; see the module docstring. ``progress`` gets :class:`TrainEvent` s.
    Raises ``ConfigError`` for bad options."""
    options.check()
    emit = progress or (lambda event: None)
    started = time.perf_counter()
    saved = _preflight(options)
    data, config = _prepare_data(options, emit)
    run = _start_run(options, data, config, emit)
    state = TrainState(options.identity(), data.fingerprint, run.tower_fingerprint)
    resumed_from = None if saved is None else _resume(run, state, saved)
    _train_epochs(run, state, prior_seconds=float(saved.meta.get("seconds", 0.0) if saved else 0.0))
    result = _result(run, state, resumed_from, time.perf_counter() - started)
    emit(TrainEvent("done", epoch=result.last_epoch, message=str(run.out)))
    return result


@dataclass
class _Run:
    """What one training session works with, set up before its first epoch."""

    options: TrainOptions
    out: Path
    data: TrainingData
    model: FusionModel
    loss_fn: FusionLoss
    tower_fingerprint: str | None
    """Of the frozen towers (``freeze_encoders``), else ``None``."""
    train_inputs: SplitInputs
    val_inputs: SplitInputs
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    lr_at: Callable[[int], float]
    """Learning-rate factor of a global step."""
    emit: ProgressCallback


def _preflight(options: TrainOptions) -> SavedState | None:
    """The saved training state of ``options.out`` (``None``: none), after refusing an ``out`` that
    does not fit ``resume`` and a CUDA device that is not there."""
    out = Path(options.out)
    saved = read_train_state_meta(out) if out.is_dir() else None
    if options.resume and saved is None:
        raise ConfigError(
            "--resume: no training state to resume here (run without --resume to start)", path=out / "train_state"
        )
    if not options.resume and (saved is not None or (out / "model.safetensors").exists()):
        raise ConfigError(
            "already holds a training run: pass --resume to continue it, or choose another --out", path=out
        )
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu)")
    return saved


def _prepare_data(options: TrainOptions, emit: ProgressCallback) -> tuple[TrainingData, ModelConfig]:
    """The training data (refused when val AUROC is undefined) and the model config to train."""
    emit(TrainEvent("data", message=f"reading reports from {options.data}"))
    data = load_training_data(options.data, options.images, options.limit, sentences=options.finding_sentences)
    if math.isnan(macro_auroc(data.val.targets, np.zeros_like(data.val.targets))):
        raise ConfigError(
            "no label has both positive and negative val studies: validation AUROC is undefined (raise --limit)"
        )
    config = get_config(options.config)
    if options.text_encoder:
        config = config.with_text_source(options.text_encoder)
    if options.image_encoder:
        config = config.with_image_source(options.image_encoder)
    return data, config


def _build_model(options: TrainOptions, data: TrainingData, config: ModelConfig) -> tuple[FusionModel, FusionLoss]:
    torch.manual_seed(options.seed)
    model = create_model(config, data.labels).to(options.device)
    loss_fn = FusionLoss(options.loss).to(options.device)
    if options.freeze_encoders:
        model.freeze_towers(True)
    return model, loss_fn


def _frozen_tower_fingerprint(model: FusionModel, options: TrainOptions) -> str | None:
    image_tower, text_tower = model.image_tower, model.text_tower
    assert image_tower is not None and text_tower is not None  # create_model builds both towers
    return module_fingerprint(image_tower) + module_fingerprint(text_tower) if options.freeze_encoders else None


def _start_run(options: TrainOptions, data: TrainingData, config: ModelConfig, emit: ProgressCallback) -> _Run:
    """Model, loss, tower inputs of train and val (frozen: cached features), optimizer, schedule."""
    emit(TrainEvent("model", message=f"building {config.name}"))
    model, loss_fn = _build_model(options, data, config)
    towers = _frozen_tower_fingerprint(model, options)

    def report(event: ProgressEvent) -> None:  # "text features" / "image features" of the feature cache
        emit(TrainEvent("features", done=event.done, total=event.total, message=event.stage))

    common: dict[str, Any] = {
        "device": options.device,
        "frozen": options.freeze_encoders,
        "cache_root": paths.cache_dir(),
        "progress": report,
    }
    train_inputs = SplitInputs(model, data.train, all_images=True, **common)
    val_inputs = SplitInputs(model, data.val, all_images=True, **common)  # predictions average every radiograph

    optimizer = torch.optim.AdamW(_param_groups(model, loss_fn, options), lr=options.lr)
    steps_per_epoch = len(plan_batches(data.train, options.batch_size, options.seed, 1))
    lr_at = _schedule(options.epochs * steps_per_epoch, options.warmup_fraction)
    return _Run(
        options=options,
        out=Path(options.out),
        data=data,
        model=model,
        loss_fn=loss_fn,
        tower_fingerprint=towers,
        train_inputs=train_inputs,
        val_inputs=val_inputs,
        optimizer=optimizer,
        steps_per_epoch=steps_per_epoch,
        lr_at=lr_at,
        emit=emit,
    )


def _resume(run: _Run, state: TrainState, saved: SavedState) -> int:
    """Continue from ``saved``: weights, optimizer, RNG and progress; returns the epoch resumed after."""
    _check_resumable(saved, state)
    weights = load_train_state(saved, run.optimizer)
    current = _trainable(run.model, run.loss_fn)
    if set(weights) != set(current):
        raise ConfigError("training state does not match this model (different config or freezing)", path=saved.path)
    with torch.no_grad():
        for name, tensor in weights.items():
            current[name].copy_(tensor)
    state.restore_progress(saved)
    return int(state.epoch)


def _check_resumable(saved: SavedState, state: TrainState) -> None:
    for key, what in (
        ("options", "options"),
        ("data_fingerprint", "training data"),
        ("tower_fingerprint", "frozen tower weights"),
    ):
        before, now = saved.meta.get(key), getattr(state, key)
        if key == "options":
            changed = sorted(k for k in set(before or {}) | set(now) if (before or {}).get(k) != now.get(k))
            if changed:
                raise ConfigError(
                    f"--resume with different {what} than the saved run: {', '.join(changed)}", path=saved.path
                )
        elif before != now:
            raise ConfigError(f"--resume: the {what} changed since the saved run", path=saved.path)


def _train_epochs(run: _Run, state: TrainState, prior_seconds: float) -> None:
    """The epochs after ``state.epoch`` up to ``epochs`` or early stopping, the state saved after each
    (``prior_seconds``: of the sessions before this one)."""
    session_start = time.perf_counter()
    for epoch in range(int(state.epoch) + 1, run.options.epochs + 1):
        if state.stopped_early:
            break
        report = _run_epoch(run, state, epoch)
        state.epoch = epoch
        state.seconds = prior_seconds + time.perf_counter() - session_start
        save_train_state(run.out, _trainable(run.model, run.loss_fn), run.optimizer, state.to_meta())
        run.emit(TrainEvent("epoch_end", epoch=epoch, report=report))


def _run_epoch(run: _Run, state: TrainState, epoch: int) -> EpochReport:
    """Train ``epoch``, score it on val, and save the checkpoint when it is the best so far."""
    epoch_start = time.perf_counter()
    losses = _fit_epoch(run, epoch)
    run.emit(TrainEvent("validate", epoch=epoch))
    probs = predict(run.model, run.val_inputs, run.options.eval_batch_size)
    auroc = macro_auroc(run.data.val.targets, probs)
    score, image_auroc = selection_score(run.model, run.val_inputs, run.data, run.options.eval_batch_size, auroc)
    improved = state.best_metric is None or score > state.best_metric + _MIN_IMPROVEMENT
    report = EpochReport.build(
        epoch,
        losses,
        auroc,
        improved,
        run.lr_at(epoch * run.steps_per_epoch - 1) * run.options.lr,
        time.perf_counter() - epoch_start,
        image_auroc,
    )
    state.history.append(dataclasses.asdict(report))
    if improved:
        state.record_best(epoch, score, auroc, image_auroc)
        _save_best(run, state, probs, epoch)
    else:
        state.record_no_improvement(run.options.patience)
    return report


def _fit_epoch(run: _Run, epoch: int) -> EpochLosses:
    options = run.options
    batches = plan_batches(run.data.train, options.batch_size, options.seed, epoch)
    run.emit(TrainEvent("epoch_start", epoch=epoch, total=len(batches)))
    return train_epoch(
        run.model,
        run.loss_fn,
        run.optimizer,
        run.train_inputs,
        batches,
        lr_at=run.lr_at,
        first_step=(epoch - 1) * run.steps_per_epoch,
        seed=options.seed,
        epoch=epoch,
        modality_dropout=options.modality_dropout,
        grad_clip=options.grad_clip,
        on_step=lambda done, total, value: run.emit(
            TrainEvent("step", epoch=epoch, done=done, total=total, loss=value)
        ),
    )


def _save_best(run: _Run, state: TrainState, probs: np.ndarray, epoch: int) -> None:
    """Write the checkpoint of the best epoch ``epoch``, its thresholds tuned on its val ``probs``."""
    data = run.data
    thresholds = tune_thresholds(data.val.targets, probs, data.labels)
    save_checkpoint(
        run.out,
        run.model,
        thresholds=thresholds.values,
        data_fingerprint=data.fingerprint,
        metrics=checkpoint_metrics(data, probs, thresholds, state),
        extra={"training": run.options.describe(), "epoch": epoch},
    )


def _result(run: _Run, state: TrainState, resumed_from: int | None, seconds: float) -> TrainResult:
    data = run.data
    return TrainResult(
        checkpoint=run.out,
        best_epoch=int(state.best_epoch),
        best_val_macro_auroc=float(state.best_val_auroc),  # type: ignore[arg-type]  # an epoch has finished
        last_epoch=int(state.epoch),
        stopped_early=bool(state.stopped_early),
        resumed_from=resumed_from,
        history=tuple(EpochReport.from_dict(h) for h in state.history),
        n_train=len(data.train),
        n_val=len(data.val),
        n_skipped=data.skipped,
        n_train_with_images=data.train.n_with_images,
        data_fingerprint=data.fingerprint,
        seconds=seconds,
    )
