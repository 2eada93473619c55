"""Text -> image cross-attention of the fusion layers, rolled out over all layers.

This view is **attention, not attribution**: it shows where the report's tokens looked in the film
while the hit was encoded, not how much each region changed the score (Integrated Gradients does
that). It is cheap (one forward pass) and comes from the very forward pass whose output is
explained, so it never disagrees with the model about what it attended to.

Attention rollout (Abnar & Zuidema 2020) over the token graph of one fusion stack. Every
:class:`~cxrsearch.model.fusion.CrossModalLayer` mixes ``T`` text and ``P`` image tokens: text
queries attend to image keys (``A_ti``, ``[T, P]``) and image queries to text keys (``A_it``,
``[P, T]``), each added to a residual. With heads averaged and the residual counted as half of
each token's new state, one layer is the row-stochastic ``(T + P) x (T + P)`` matrix::

    M = 0.5 * I + 0.5 * [[0,    A_ti],
                         [A_it, 0   ]]

and the rollout ``R = M_N ... M_1`` says how much of each final token comes from each input token
along every path through the layers (text -> image -> text -> image ...). The map shown is
``R[text, image]`` averaged over the report's real tokens (padding never counts): the share of the
text stream's content that came from each image patch. The hybrid FFN's global means mix every
token with the other stream uniformly; being uniform they move no mass between patches and are
left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import QueryError

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.output import ModelOutput


@dataclass(frozen=True)
class AttentionMap:
    """Text -> image attention over the patch grid of the model canvas.

    Attributes:
        rollout: ``float32 [rows, cols]``: share of the text tokens' final content that flows from
            each image patch through all fusion layers. Its total is fixed by the layer count
            (0.5 for two layers), so only its distribution over the film carries information.
        per_layer: one ``float32 [rows, cols]`` per fusion layer: the layer's text -> image
            attention, averaged over heads and real text tokens (each sums to 1).
        grid: ``(rows, cols)`` of the patch grid; patch ``(r, c)`` covers canvas pixels
            ``[r, r + 1) * S / rows`` x ``[c, c + 1) * S / cols``.
        text_tokens: how many real text tokens were averaged.
        heads: attention heads per layer (averaged).
    """

    rollout: np.ndarray
    per_layer: tuple[np.ndarray, ...]
    grid: tuple[int, int]
    text_tokens: int
    heads: int


def layer_matrix(t2i: np.ndarray, i2t: np.ndarray) -> np.ndarray:
    """One layer's ``(T + P) x (T + P)`` rollout matrix from head-averaged ``[T, P]`` / ``[P, T]``."""
    texts, patches = t2i.shape
    if i2t.shape != (patches, texts):
        raise QueryError(f"attention shapes do not fit: text->image {t2i.shape}, image->text {i2t.shape}")
    mixing = np.zeros((texts + patches, texts + patches))
    mixing[:texts, texts:] = t2i
    mixing[texts:, :texts] = i2t
    return 0.5 * np.eye(texts + patches) + 0.5 * mixing


def attention_rollout(out: ModelOutput, row: int = 0) -> AttentionMap:
    """The rollout for batch item ``row`` of a forward pass that had both an image and a text."""
    if not (out.has_image and out.has_text):
        raise QueryError("text -> image attention needs a forward pass with both a radiograph and a report")
    if not out.text_to_image_attn:
        raise QueryError("the model has no fusion layers: there is no cross-attention to show")
    keep = out.text_mask[row].detach().cpu().numpy().astype(bool)
    rows, cols = out.patch_grid
    rollout = np.eye(int(keep.sum()) + rows * cols)
    per_layer = []
    heads = 0
    for t2i_all, i2t_all in zip(out.text_to_image_attn, out.image_to_text_attn):
        heads = int(t2i_all.shape[1])
        t2i = t2i_all[row].detach().double().mean(0).cpu().numpy()[keep]  # [T_real, P]
        i2t = i2t_all[row].detach().double().mean(0).cpu().numpy()[:, keep]  # [P, T_real]
        per_layer.append(t2i.mean(0).reshape(rows, cols).astype(np.float32))
        rollout = layer_matrix(t2i, i2t) @ rollout
    texts = int(keep.sum())
    text_from_image = rollout[:texts, texts:].mean(0)
    return AttentionMap(
        rollout=text_from_image.reshape(rows, cols).astype(np.float32),
        per_layer=tuple(per_layer),
        grid=(rows, cols),
        text_tokens=texts,
        heads=heads,
    )
