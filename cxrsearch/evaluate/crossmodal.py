"""The CXR-CLIP Open-I protocol: image <-> report retrieval Recall@1/5/10 over frontal pairs.

For every study of the evaluated split with a frontal radiograph (``PA``/``AP``; the view comes from
the DICOM header or the Open-i metadata table, so PNGs need the table), take one pair: its first
frontal image (by image id) and its report. With ``N`` pairs, the image embeddings ``[N, D]`` and
the report embeddings ``[N, D]`` (the stored ``image`` and ``text`` vectors, both from the same
checkpoint) are compared exhaustively:

- image -> report ``R@k``: the fraction of images whose own report is among the ``k`` most similar
  of the ``N`` reports; report -> image likewise.
- Ties are counted against the method (the rank of the true partner is the number of candidates
  scoring at least as high), so identical report texts cannot inflate the recall.
- A random ranking scores ``R@k = k / N`` in expectation; it is reported next to the model.

This is a closed-set protocol over the split's pairs (as in CXR-CLIP), computed exactly with numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from cxrsearch.errors import ConfigError
from cxrsearch.evaluate.casebase import FRONTAL_VIEWS, Case

PROTOCOL_KS = (1, 5, 10)


@dataclass(frozen=True)
class CrossModalResult:
    """Recall of one checkpoint under the protocol (empty mappings and a ``note`` when it cannot run).

    Attributes:
        method: ``"model"`` or ``"untrained"``.
        pairs: ``N``, frontal image-report pairs of the split.
        image_to_report / report_to_image: ``{"R@1": .., "R@5": .., "R@10": ..}``.
        random: the expected recall of a random ranking, ``{"R@k": k / N}``.
        note: why it did not run (``"no images"``, ...), else ``None``.
    """

    method: str
    pairs: int
    image_to_report: Mapping[str, float]
    report_to_image: Mapping[str, float]
    random: Mapping[str, float]
    note: str | None = None


def pair_recall(
    image_vectors: np.ndarray, text_vectors: np.ndarray, ks: Sequence[int] = PROTOCOL_KS
) -> tuple[dict[str, float], dict[str, float]]:
    """``(image->report, report->image)`` ``R@k`` for row-aligned pairs (row ``i`` of both is one study)."""
    images = np.asarray(image_vectors, dtype=np.float64)
    texts = np.asarray(text_vectors, dtype=np.float64)
    if images.ndim != 2 or images.shape != texts.shape or len(images) == 0:
        raise ConfigError(
            f"pair recall: image {images.shape} and text {texts.shape} embeddings must be the same non-empty [N, D]"
        )
    scores = images @ texts.T  # [image, report]
    own = np.diag(scores)
    rank_i2t = (scores >= own[:, None]).sum(axis=1)  # 1 = best; ties count against
    rank_t2i = (scores >= own[None, :]).sum(axis=0)
    i2t = {f"R@{k}": float(np.mean(rank_i2t <= k)) for k in ks}
    t2i = {f"R@{k}": float(np.mean(rank_t2i <= k)) for k in ks}
    return i2t, t2i


def frontal_pairs(cases: Mapping[str, Case], split: str) -> tuple[list[str], np.ndarray | None, np.ndarray | None, int]:
    """``(uids, image vectors, text vectors, images in split)`` of the split's frontal pairs."""
    uids, images, texts, any_images = [], [], [], 0
    for uid in sorted((u for u, c in cases.items() if c.split == split), key=lambda u: int(u[3:])):
        case = cases[uid]
        any_images += len(case.image_points)
        frontal = [
            p for p in case.image_points if p.view in FRONTAL_VIEWS and "image" in p.vectors and "text" in p.vectors
        ]
        if frontal:
            uids.append(uid)
            images.append(cast(np.ndarray, frontal[0].vectors["image"]))  # dense vectors
            texts.append(cast(np.ndarray, frontal[0].vectors["text"]))
    if not uids:
        return [], None, None, any_images
    return uids, np.stack(images), np.stack(texts), any_images


def evaluate_crossmodal(method: str, cases: Mapping[str, Case], split: str) -> CrossModalResult:
    """The protocol on the split's stored cases of one checkpoint (see the module docstring)."""
    uids, images, texts, any_images = frontal_pairs(cases, split)
    if images is None or texts is None:
        note = (
            "no images"
            if any_images == 0
            else (
                f"no frontal image with a report among {any_images} images "
                "(views unknown? pass the Open-i metadata table)"
            )
        )
        return CrossModalResult(method, 0, {}, {}, {}, note)
    i2t, t2i = pair_recall(images, texts)
    random = {f"R@{k}": min(1.0, k / len(uids)) for k in PROTOCOL_KS}
    return CrossModalResult(method, len(uids), i2t, t2i, random)
