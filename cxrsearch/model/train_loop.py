"""The inner loop of training: batch plans, tower inputs (live or cached), one epoch, predictions.

Batches never mix modalities: each epoch the studies of a split are grouped into *paired* (text and
image), *text-only* and *image-only*, each group is shuffled and cut into batches, and the batch
order is shuffled. Shuffling, the image picked for a study with several radiographs, and the
modality-dropout draws are pure functions of ``(seed, epoch)`` (``numpy.random.default_rng``), so an
epoch replays identically after ``--resume``.

**Modality dropout**: with probability ``modality_dropout`` a paired batch is also run with only its
image or only its text (each with probability 1/2), adding that pass's classification and alignment
losses; so image-only and text-only queries get trained outputs, as the model expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cxrsearch.model.feature_cache import image_features, text_features
from cxrsearch.model.train_data import SplitData
from cxrsearch.progress import ProgressCallback

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.losses import FusionLoss, LossParts
    from cxrsearch.model.output import ImageFeatures, TextFeatures


@dataclass(frozen=True)
class Batch:
    """Sample indices of one batch; ``image_slots[i]`` is which of study ``rows[i]``'s images to use
    (``None``: the batch has no images); ``use_text``: whether the batch has texts."""

    rows: tuple[int, ...]
    image_slots: tuple[int, ...] | None
    use_text: bool


def _groups(split: SplitData) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {"paired": [], "text": [], "image": []}
    for i, (text, images) in enumerate(zip(split.texts, split.images)):
        groups["paired" if text is not None and images else "text" if text is not None else "image"].append(i)
    return groups


def plan_batches(split: SplitData, batch_size: int, seed: int | None, epoch: int = 0) -> list[Batch]:
    """The batches of one epoch (``seed=None``: in order, first image of each study: for evaluation)."""
    rng = None if seed is None else np.random.default_rng([seed, epoch])
    batches = []
    for name, rows in _groups(split).items():
        order = np.asarray(rows) if rng is None else rng.permutation(rows)
        for start in range(0, len(order), batch_size):
            chunk = tuple(int(r) for r in order[start : start + batch_size])
            slots = None
            if name != "text":
                slots = tuple(0 if rng is None else int(rng.integers(len(split.images[r]))) for r in chunk)
            batches.append(Batch(chunk, slots, name != "image"))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def evaluation_batches(split: SplitData, batch_size: int) -> list[Batch]:
    """Every (study, radiograph) pair once, and each study without one once, in split order: the
    points ``cxrsearch index`` makes of the split (one per radiograph with its report, else the
    report), so that a study's prediction can be their mean, as ``cxrsearch evaluate`` takes it."""
    batches = []
    for name, rows in _groups(split).items():
        pairs = [(r, k) for r in rows for k in (range(len(split.images[r])) if name != "text" else (0,))]
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            slots = None if name == "text" else tuple(k for _, k in chunk)
            batches.append(Batch(tuple(r for r, _ in chunk), slots, name != "image"))
    return batches


class SplitInputs:
    """Tower features for batches of one split: from cached frozen-tower tables, or by running the
    (trainable) towers live. ``all_images``: make every image of a study usable (training); else only
    the first (evaluation). ``progress``: the feature cache's ``"text features"`` / ``"image
    features"`` events while frozen-tower tables are computed."""

    def __init__(
        self,
        model: FusionModel,
        split: SplitData,
        *,
        device: str,
        frozen: bool,
        cache_root: Path | None,
        all_images: bool,
        progress: ProgressCallback | None = None,
    ) -> None:
        from cxrsearch.model.encode import Encoder

        self.model, self.split, self.device, self.frozen = model, split, device, frozen
        self.encoder = Encoder(model, device=device)
        self.text_row = {i: j for j, i in enumerate(i for i, t in enumerate(split.texts) if t is not None)}
        slots = [
            (i, k)
            for i, paths in enumerate(split.images)
            for k in range(len(paths) if all_images else min(1, len(paths)))
        ]
        self.image_row = {slot: j for j, slot in enumerate(slots)}
        self.text_table = self.image_table = None
        if frozen:
            texts = [t for t in split.texts if t is not None]
            if texts:
                self.text_table = text_features(model, texts, cast(Path, cache_root), device=device, progress=progress)
            if slots:
                paths = [split.images[i][k] for i, k in slots]
                self.image_table = image_features(
                    model, paths, cast(Path, cache_root), device=device, progress=progress
                )

    def features(
        self, batch: Batch, with_image: bool = True, with_text: bool = True
    ) -> tuple[ImageFeatures | None, TextFeatures | None]:
        """Tower outputs of ``batch`` (a modality is ``None`` when absent or not asked for)."""
        image = text = None
        if with_text and batch.use_text:
            if self.text_table is not None:
                text = self.text_table.select([self.text_row[r] for r in batch.rows], self.device)
            else:
                tokens = self.encoder.tokenize(cast(list[str], [self.split.texts[r] for r in batch.rows]))
                text = self.model.encode_text(tokens["input_ids"], tokens["attention_mask"])
        if with_image and batch.image_slots is not None:
            if self.image_table is not None:
                image = self.image_table.select(
                    [self.image_row[(r, k)] for r, k in zip(batch.rows, batch.image_slots)], self.device
                )
            else:
                from cxrsearch.image.decode import decode_image

                decoded = [decode_image(self.split.images[r][k]) for r, k in zip(batch.rows, batch.image_slots)]
                pixels, _ = self.encoder.prepare_images(decoded)
                image = self.model.encode_image(pixels)
        return image, text

    def same_mask(self, batch: Batch) -> torch.Tensor:
        """``[B, B]`` bool: identical normalised reports or identical label sets (not negatives)."""
        from cxrsearch.model.losses import same_group_mask

        split = self.split
        texts = [split.text_keys[r] if split.text_keys[r] is not None else f"#{split.uids[r]}" for r in batch.rows]
        return same_group_mask(texts, [split.label_sets[r] for r in batch.rows])


@dataclass(frozen=True)
class EpochLosses:
    """Mean per-batch values of one epoch's loss terms (``None``: the term never applied)."""

    total: float
    classification: float
    contrastive: float | None
    alignment: float | None
    text_supcon: float | None


_TERMS = ("total", "classification", "contrastive", "alignment", "text_supcon")


def train_epoch(
    model: FusionModel,
    loss_fn: FusionLoss,
    optimizer: torch.optim.Optimizer,
    inputs: SplitInputs,
    batches: Sequence[Batch],
    *,
    lr_at: Callable[[int], float],
    first_step: int,
    seed: int,
    epoch: int,
    modality_dropout: float,
    grad_clip: float,
    on_step: Callable[[int, int, float], None] | None = None,
) -> EpochLosses:
    """One pass over ``batches``; the learning-rate factor of global step ``s`` is ``lr_at(s)``."""
    rng = np.random.default_rng([seed, epoch, 1])
    sums: dict[str, list[float]] = {term: [] for term in _TERMS}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    model.train()
    for index, batch in enumerate(batches):
        _set_lr(optimizer, lr_at(first_step + index))
        total, parts = _batch_loss(model, loss_fn, inputs, batch, rng, modality_dropout)
        _step(optimizer, total, params, grad_clip)
        value = float(total.detach())
        _record(sums, value, parts)
        if on_step is not None:
            on_step(index + 1, len(batches), value)
    mean = {k: (float(np.mean(v)) if v else None) for k, v in sums.items()}
    return EpochLosses(
        mean["total"] or 0.0, mean["classification"] or 0.0, mean["contrastive"], mean["alignment"], mean["text_supcon"]
    )


def _set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def _batch_loss(
    model: FusionModel,
    loss_fn: FusionLoss,
    inputs: SplitInputs,
    batch: Batch,
    rng: np.random.Generator,
    modality_dropout: float,
) -> tuple[torch.Tensor, LossParts]:
    """``(total, parts)`` of one batch: ``parts`` of the full pass; ``total`` adds, on a modality
    dropout draw (paired batches only), the loss of the image-only or text-only pass."""
    import torch

    targets = torch.from_numpy(inputs.split.targets[list(batch.rows)]).to(inputs.device)
    same = inputs.same_mask(batch)
    image, text = inputs.features(batch)
    parts = loss_fn(model.fuse(image, text), targets, same)
    total = parts.total
    if image is not None and text is not None and rng.random() < modality_dropout:
        keep_image = bool(rng.random() < 0.5)
        single = model.fuse(image if keep_image else None, None if keep_image else text)
        total = total + loss_fn(single, targets, same).total
    return total, parts


def _step(optimizer: torch.optim.Optimizer, total: torch.Tensor, params: list[torch.Tensor], grad_clip: float) -> None:
    import torch

    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def _record(sums: dict[str, list[float]], total: float, parts: LossParts) -> None:
    """Append this batch's value of each loss term that applied (``total``: the one backpropagated)."""
    values = (total, parts.classification, parts.contrastive, parts.alignment, parts.text_supcon)
    for term, value in zip(_TERMS, values):
        if value is not None:
            sums[term].append(value)


def _study_means(
    model: FusionModel, inputs: SplitInputs, batch_size: int, image_only: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(sums, counts)``: per study, the summed label probabilities of its evaluation batches (each
    radiograph with its report, or the report alone; ``image_only``: the radiographs without their
    report, report-only studies skipped) and how many were summed. Eval mode, no gradients."""
    import torch

    sums = np.zeros(inputs.split.targets.shape, dtype=np.float64)
    counts = np.zeros(len(inputs.split), dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in evaluation_batches(inputs.split, batch_size):
                if image_only and batch.image_slots is None:
                    continue
                image, text = inputs.features(batch, with_text=not image_only)
                probs = torch.sigmoid(model.fuse(image, text).logits).double().cpu().numpy()
                np.add.at(sums, list(batch.rows), probs)
                np.add.at(counts, list(batch.rows), 1)
    finally:
        model.train(was_training)
    return sums, counts


def predict_image_only(model: FusionModel, inputs: SplitInputs, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, [R, L] probabilities)`` of the studies of ``inputs.split`` that have radiographs,
    from their radiographs alone (the report withheld), averaged per study as :func:`predict` does:
    what an image query's predicted labels rest on."""
    sums, counts = _study_means(model, inputs, batch_size, image_only=True)
    rows = np.flatnonzero(counts)
    return rows, (sums[rows] / counts[rows, None]).astype(np.float32)


def predict(model: FusionModel, inputs: SplitInputs, batch_size: int) -> np.ndarray:
    """``[N, L]`` label probabilities of every sample of ``inputs.split``, in split order, in eval
    mode: the mean over the study's radiographs (each with its report), or its report alone, the
    per-study aggregation of ``cxrsearch evaluate`` (:meth:`cxrsearch.evaluate.casebase.Case.probs`),
    so that thresholds tuned on these predictions apply to the numbers evaluate reports. Needs
    ``inputs`` made with ``all_images=True`` when the split has studies with several radiographs."""
    sums, counts = _study_means(model, inputs, batch_size, image_only=False)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
