"""Training losses of the fusion model, all numerically stable from logits.

Four terms, each weighted by :class:`LossConfig` and summed by :class:`FusionLoss`:

``classification``
    ``bce_weight * BCE + focal_weight * focal`` over the multi-label head. The focal term is the
    standard one (Lin et al. 2017): ``FL = -alpha_t (1 - p_t)^gamma log(p_t)`` with
    ``p_t = p`` if ``y = 1`` else ``1 - p`` and ``alpha_t = alpha`` if ``y = 1`` else ``1 - alpha``.
``contrastive``
    Symmetric image-text InfoNCE (CLIP) with a learnable temperature, clamped to
    ``logit_scale <= max_logit_scale`` (or fixed when ``learn_temperature`` is false).
    **Duplicates are not negatives**: Open-i has hundreds of near-identical "normal" reports, so
    pushing a study away from another study with the same report would be noise. Off-diagonal pairs
    whose normalised report text is identical *or* whose label sets are identical are **masked out of
    the softmax** (their logit is set to ``-inf``). The loss then equals InfoNCE on the batch with
    those negatives removed, and its gradient never pushes such a pair apart (it does not pull them
    together either: that is the job of the label-supervised term below). The matched pair itself
    always stays the positive. Skipped when the batch has no images.
``alignment``
    ``1 - cos(joint, m)`` averaged over the modalities ``m`` present (image, text): the fused
    embedding stays in the same space as each single-modality embedding, so a text-only or image-only
    query can retrieve fused study vectors.
``text_supcon``
    A label-supervised contrastive term on the *text* embeddings (a multi-label SupCon): for every
    anchor, the softmax over the other texts of the batch is trained towards a soft target that
    spreads mass over the other texts in proportion to the Jaccard similarity of their label sets.
    "Normal" is a label of its own (``normal`` in labels.json), so two normal reports are identical
    by that label; a study with *no* label (mixed findings outside the vocabulary, "No Indexing") has
    Jaccard 0 to everything, also to another unlabelled study: unlabelled is not a class. Anchors
    whose labels share nothing with any other text (unlabelled ones included) are skipped. This
    clusters text embeddings by findings, which is what makes text -> case retrieval return
    clinically similar cases; it is also what still shapes the joint space when the training data
    are text only (no images on the machine).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cxrsearch.errors import ConfigError


@dataclass(frozen=True)
class LossConfig:
    """Weights and hyper-parameters of every loss term (a weight of 0 switches a term off)."""

    bce_weight: float = 1.0
    focal_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    contrastive_weight: float = 1.0
    alignment_weight: float = 0.5
    text_supcon_weight: float = 0.5
    init_temperature: float = 0.07
    learn_temperature: bool = True
    max_logit_scale: float = 100.0
    supcon_temperature: float = 0.1

    def __post_init__(self) -> None:
        for name in ("bce_weight", "focal_weight", "contrastive_weight", "alignment_weight", "text_supcon_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"loss weight {name} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= self.focal_alpha <= 1.0:
            raise ConfigError(f"focal_alpha must be in [0, 1], got {self.focal_alpha}")
        if self.focal_gamma < 0:
            raise ConfigError(f"focal_gamma must be >= 0, got {self.focal_gamma}")
        for name in ("init_temperature", "supcon_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.max_logit_scale >= 1.0 / self.init_temperature:
            raise ConfigError(
                f"max_logit_scale ({self.max_logit_scale}) must be >= "
                f"1 / init_temperature ({1 / self.init_temperature:g})"
            )


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over every (study, label) cell. ``logits``, ``targets``: ``[B, L]``."""
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float | None = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Mean sigmoid focal loss ``-alpha_t (1 - p_t)^gamma log(p_t)`` over ``[B, L]`` cells.

    ``log(p_t)`` is ``-BCE(logit, y)`` (computed with log-sigmoid, stable for any logit) and
    ``p_t = exp(log p_t)``. ``alpha=None`` means ``alpha_t = 1`` (no class balancing).
    """
    targets = targets.to(logits.dtype)
    log_pt = -F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    modulating = (1.0 - log_pt.exp()).clamp_min(0.0).pow(gamma)
    loss = -modulating * log_pt
    if alpha is not None:
        loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss
    return loss.mean()


def same_group_mask(*keys: Sequence[Hashable]) -> torch.Tensor:
    """``[B, B]`` bool: ``True`` where two items share a key in *any* of the key lists.

    E.g. ``same_group_mask(normalised_texts, label_sets)`` marks identical or label-identical
    reports. The diagonal is always ``True``.
    """
    if not keys:
        raise ConfigError("same_group_mask needs at least one key list")
    size = len(keys[0])
    mask = torch.eye(size, dtype=torch.bool)
    for key_list in keys:
        if len(key_list) != size:
            raise ConfigError(f"same_group_mask: key lists differ in length ({len(key_list)} vs {size})")
        ids: dict[Hashable, int] = {}
        codes = torch.tensor([ids.setdefault(k, len(ids)) for k in key_list])
        mask |= codes[:, None] == codes[None, :]
    return mask


def contrastive_loss(
    image_embedding: torch.Tensor,
    text_embedding: torch.Tensor,
    logit_scale: torch.Tensor | float,
    same_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between ``[B, D]`` L2-normalised image and text embeddings.

    Row ``i`` of image-to-text logits has positive ``i``; off-diagonal cells where ``same_mask``
    (``[B, B]`` bool) is ``True`` are removed from the softmax (see the module docstring).
    """
    if image_embedding.shape != text_embedding.shape:
        raise ConfigError(
            f"contrastive_loss: image {tuple(image_embedding.shape)} vs text {tuple(text_embedding.shape)}"
        )
    size = image_embedding.shape[0]
    logits = logit_scale * image_embedding @ text_embedding.t()
    if same_mask is not None:
        eye = torch.eye(size, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same_mask.to(logits.device) & ~eye, float("-inf"))
    target = torch.arange(size, device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def alignment_loss(joint_embedding: torch.Tensor, *modalities: torch.Tensor | None) -> torch.Tensor:
    """Mean ``1 - cos(joint, m)`` over the present (non-``None``) ``[B, D]`` modality embeddings."""
    present = [m for m in modalities if m is not None]
    if not present:
        return joint_embedding.new_zeros(())
    terms = [1.0 - F.cosine_similarity(joint_embedding, m, dim=-1).mean() for m in present]
    return torch.stack(terms).mean()


def label_supcon_loss(embedding: torch.Tensor, targets: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Multi-label supervised contrastive loss with Jaccard soft targets (see the module docstring).

    ``embedding``: ``[B, D]`` L2-normalised; ``targets``: ``[B, L]`` 0/1. Returns 0 (with a graph)
    when no anchor has a label-overlapping partner in the batch.
    """
    size = embedding.shape[0]
    eye = torch.eye(size, dtype=torch.bool, device=embedding.device)
    y = targets.to(embedding.dtype)
    inter = y @ y.t()
    count = y.sum(dim=1)
    union = count[:, None] + count[None, :] - inter
    jaccard = (inter / union.clamp_min(1.0)).masked_fill(eye, 0.0)  # 0 where both are unlabelled (union 0)
    mass = jaccard.sum(dim=1)
    anchors = mass > 0
    if not bool(anchors.any()):
        return embedding.sum() * 0.0
    logits = (embedding @ embedding.t() / temperature).masked_fill(eye, float("-inf"))
    log_prob = F.log_softmax(logits, dim=1).masked_fill(eye, 0.0)
    soft_target = jaccard[anchors] / mass[anchors, None]
    return -(soft_target * log_prob[anchors]).sum(dim=1).mean()


@dataclass(frozen=True)
class LossParts:
    """One batch's loss: ``total`` (scalar tensor with a graph) and each term as a float for logging.

    A term that could not be computed for this batch (e.g. ``contrastive`` without images) is ``None``.
    """

    total: torch.Tensor
    classification: float
    contrastive: float | None
    alignment: float | None
    text_supcon: float | None


class FusionLoss(nn.Module):
    """All loss terms; owns the (learnable, clamped) contrastive temperature as ``log_scale``.

    The temperature is a training-only parameter (retrieval ranks by cosine, which it does not
    change), so it lives here and is saved in the training state, not in the model checkpoint.
    """

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.config = config
        init = torch.tensor(math.log(1.0 / config.init_temperature))
        if config.learn_temperature:
            self.log_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init)

    def logit_scale(self) -> torch.Tensor:
        """``exp(log_scale)`` clamped to ``max_logit_scale`` (CLIP clamps at 100)."""
        return self.log_scale.exp().clamp(max=self.config.max_logit_scale)

    def forward(self, output, targets: torch.Tensor, same_mask: torch.Tensor | None = None) -> LossParts:
        """``output``: a ``ModelOutput`` (``logits [B, L]``, L2-normalised ``[B, D]`` embeddings, the
        image or text one ``None`` when that modality is absent); ``targets``: ``[B, L]`` 0/1;
        ``same_mask``: ``[B, B]`` bool from :func:`same_group_mask` (duplicates not negatives)."""
        cfg = self.config
        classification = cfg.bce_weight * bce_loss(output.logits, targets) + cfg.focal_weight * focal_loss(
            output.logits, targets, cfg.focal_alpha, cfg.focal_gamma
        )
        total = classification
        contrastive = alignment = supcon = None
        image, text = output.image_embedding, output.text_embedding
        if cfg.contrastive_weight > 0 and image is not None and text is not None and image.shape[0] > 1:
            term = contrastive_loss(image, text, self.logit_scale(), same_mask)
            total, contrastive = total + cfg.contrastive_weight * term, float(term.detach())
        if cfg.alignment_weight > 0 and (image is not None or text is not None):
            term = alignment_loss(output.joint_embedding, image, text)
            total, alignment = total + cfg.alignment_weight * term, float(term.detach())
        if cfg.text_supcon_weight > 0 and text is not None and text.shape[0] > 1:
            term = label_supcon_loss(text, targets, cfg.supcon_temperature)
            total, supcon = total + cfg.text_supcon_weight * term, float(term.detach())
        return LossParts(total, float(classification.detach()), contrastive, alignment, supcon)
