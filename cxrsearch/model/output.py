"""Typed outputs of the towers and of :class:`~cxrsearch.model.fusion.FusionModel`.

Shapes: ``B`` batch, ``P`` image patch tokens (``grid[0] * grid[1]``), ``T`` text tokens (padding
included), ``Ci`` / ``Ct`` tower widths, ``D`` the joint dimension, ``L`` labels, ``H`` fusion heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class ImageFeatures:
    """What the image tower returns (and what ``--freeze-encoders`` training caches).

    Attributes:
        tokens: ``[B, P, Ci]`` patch tokens of the last stage, row-major over ``grid``.
        pooled: ``[B, Ci]`` the tower's own pooled vector (timm ``forward_head(pre_logits=True)``).
        grid: ``(rows, cols)`` of the patch grid, ``rows * cols == P``; patch ``(r, c)`` covers the
            model-resolution square ``[r, r + 1) * S / rows`` x ``[c, c + 1) * S / cols``.
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    grid: tuple[int, int]


@dataclass(frozen=True)
class TextFeatures:
    """What the text tower returns (and what ``--freeze-encoders`` training caches).

    Attributes:
        tokens: ``[B, T, Ct]`` last hidden states (padding positions included, never used).
        mask: ``[B, T]`` attention mask, 1 (or True) = real token, 0 = padding.
        pooled: ``[B, Ct]`` CLS state or mask-aware mean, per the tower's ``pooling``.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


@dataclass(frozen=True)
class ModelOutput:
    """Everything one forward pass of the fusion model produces.

    Attributes:
        image_embedding: ``[B, D]`` L2-normalised projection of the image tower's pooled vector (the
            contrastive space); ``None`` when no image was given.
        text_embedding: ``[B, D]`` L2-normalised projection of the text tower's pooled vector (same
            space as ``image_embedding``); ``None`` when no text was given.
        joint_embedding: ``[B, D]`` L2-normalised fused embedding from the cross-attention layers;
            always present (an absent modality is replaced by a learned null token).
        logits: ``[B, L]`` multi-label logits from the fused representation (``sigmoid`` -> probs).
        text_to_image_attn: one ``[B, H, T, P]`` tensor per fusion layer: how much each text token
            (query) attends to each image patch (key). Rows of padding tokens are meaningless; when
            the image is absent ``P == 1`` (the null image token).
        image_to_text_attn: one ``[B, H, P, T]`` tensor per fusion layer: image patches (queries)
            attending to text tokens (keys); padding columns are exactly 0. When the text is absent
            ``T == 1`` (the null text token).
        text_mask: ``[B, T]`` bool, True = real token (all True for the null text token).
        patch_grid: ``(rows, cols)`` of the image patches (``(1, 1)`` for the null image token);
            reshape a ``[P]`` attention row to ``patch_grid`` to get a map over the model input.
        has_image, has_text: which modalities were given.
    """

    image_embedding: torch.Tensor | None
    text_embedding: torch.Tensor | None
    joint_embedding: torch.Tensor
    logits: torch.Tensor
    text_to_image_attn: tuple[torch.Tensor, ...]
    image_to_text_attn: tuple[torch.Tensor, ...]
    text_mask: torch.Tensor
    patch_grid: tuple[int, int]
    has_image: bool
    has_text: bool
