"""What the user asks ``explain`` (:class:`ExplainRequest`) and what it resolves to.

The query options mirror ``cxrsearch search`` and the query vector is the one that search ranks
with (see :mod:`cxrsearch.search.query`):

=============  ============================================  =============================
query          query vector ``q``                            explained score
=============  ============================================  =============================
``--text``     text embedding of the query (cleaned like     ``cos(q, joint(hit))``; when
               reports); the label head's probabilities      the fusion has no dense list
               ``p(q)`` of it                                (the default): the label score
                                                             ``p(q) . p(hit) / sum p(q)``
``--image``    image embedding (decoded and preprocessed     ``cos(q, joint(hit))``
               exactly as at indexing: DICOM included)
both           joint embedding of the query pair             ``cos(q, joint(hit))``
``--like ID``  the example's stored ``joint`` vector         ``cos(q, joint(hit))``
``--label L``  (none)                                        the hit's logit for ``L``
=============  ============================================  =============================

``joint(hit)`` is the hit's joint embedding recomputed from its radiograph and report through
the whole model, so every pixel and every word reaches the score through the towers, the
projections and the fusion layers. The model aligns the joint space with the image and text spaces
(the joint embedding is a residual on their projections), which is why one explained score serves
every query mode; the cosines of ``q`` with the hit's stored ``image`` / ``text`` / ``joint``
vectors (what search ranked by) are reported alongside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cxrsearch.errors import QueryError
from cxrsearch.explain.attribution import BASELINES, DEFAULT_STEPS, PRECISIONS, check_steps
from cxrsearch.explain.target import Target
from cxrsearch.search.modes import (
    DENSE_COMPONENTS,
    FusionWeights,
    active_components,
    bm25_params,
    encode_queries,
    fusion_weights,
    query_text,
)
from cxrsearch.search.modes import mode as search_mode
from cxrsearch.search.query import find_example
from cxrsearch.search.spec import example_keys, normalise_query
from cxrsearch.store.base import Filter, SparseVector

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.encode import Encoder
    from cxrsearch.store.base import Point, Store


@dataclass(frozen=True)
class ExplainRequest:
    """One explanation to compute.

    Attributes:
        hit: the hit to explain: a point id, an image id (``CXR3029_IM-1404-1001``) or a study id
            (``CXR3029``: its image point with the smallest image id, else its report point).
        collection: the collection the hit lives in.
        text / image / like: the query, as for ``cxrsearch search`` (``like`` alone).
        label: explain the hit's logit for this label instead of a similarity (no query then).
        steps: Integrated Gradients steps (pixels and tokens); internal_batch_size: interpolation
            points per forward pass (memory stays flat whatever ``steps`` is); ``None``: per
            precision and modality (:func:`~cxrsearch.explain.attribution.default_batches`).
        baseline: pixel baseline, ``"black"`` or ``"blur"`` (see :mod:`cxrsearch.explain.attribution`).
        precision: ``"auto"`` (bf16 where the hardware computes it natively, else fp32), ``"fp32"``
            or ``"bf16"``, for both attributions.
        out_dir: where PNGs and the JSON go; ``None``: a new folder under ``paths.output_dir()``.
        top_k: how many top words the summary lists.
        images: the folder the hit's radiograph path is relative to, when the store does not record
            it (a server collection); default: the collection's images root.
    """

    hit: str
    collection: str
    text: str | None = None
    image: Path | None = None
    like: str | None = None
    label: str | None = None
    steps: int = DEFAULT_STEPS
    internal_batch_size: int | None = None
    baseline: str = "black"
    out_dir: Path | None = None
    top_k: int = 10
    precision: str = "auto"
    images: Path | None = None

    def __post_init__(self) -> None:
        hit = str(self.hit).strip()
        if not hit:
            raise QueryError("HIT is empty: give a point id, image id or study id from `cxrsearch search`")
        object.__setattr__(self, "hit", hit)
        text, image, like = normalise_query(self.text, self.image, self.like)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "like", like)
        if self.out_dir is not None:
            object.__setattr__(self, "out_dir", Path(self.out_dir).expanduser())
        has_query = text is not None or self.image is not None or like is not None
        if like is not None and (text is not None or self.image is not None):
            raise QueryError(
                "--like explains the similarity to an indexed case; it cannot be combined with --text or --image"
            )
        if self.label is not None and has_query:
            raise QueryError(
                "--label explains why the hit's label was predicted; "
                "it cannot be combined with --text, --image or --like"
            )
        if self.label is None and not has_query:
            raise QueryError("nothing to explain against: give --text, --image (or both), --like ID, or --label L")
        if self.baseline not in BASELINES:
            raise QueryError(f"unknown baseline {self.baseline!r} (use one of: {', '.join(BASELINES)})")
        if self.precision not in ("auto", *PRECISIONS):
            raise QueryError(f"unknown precision {self.precision!r} (use one of: auto, {', '.join(PRECISIONS)})")
        check_steps(self.steps, 1 if self.internal_batch_size is None else self.internal_batch_size)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise QueryError(f"top_k must be a positive integer, got {self.top_k!r}")

    @property
    def mode(self) -> str:
        """``"text"``, ``"image"``, ``"text+image"``, ``"like"`` or ``"label"``."""
        if self.label is not None:
            return "label"
        if self.like is not None:
            return "like"
        if self.text is not None and self.image is not None:
            return "text+image"
        return "text" if self.text is not None else "image"

    def describe_query(self) -> str:
        """The query in a few words, for titles: ``'"enlarged heart"'``, ``'image chest.dcm'``..."""
        if self.mode == "label":
            return f"label {self.label}"
        if self.mode == "like":
            return f"like {self.like}"
        parts = []
        if self.text is not None:
            parts.append(f'"{self.text}"')
        if self.image is not None:
            parts.append(f"image {self.image.name}")
        return " + ".join(parts)


def build_target(
    request: ExplainRequest, encoder: Encoder, store: Store, weights: FusionWeights | None = None
) -> tuple[Target, dict | None]:
    """The :class:`Target` for ``request`` and the query vectors ``search`` would send (``None`` for
    label and like queries); encodes the query with ``encoder`` where needed. ``weights``: the
    fusion the collection's text searches use (``None``: :func:`fusion_weights` of ``encoder``)."""
    if request.mode == "label":
        return Target.label_logit(encoder.labels, str(request.label)), None
    if request.mode == "like":
        example = find_example(store, request.collection, str(request.like))
        if "joint" not in example.vectors:
            raise QueryError(f"point {example.id} has no joint vector", path=request.collection)
        return Target.similarity(cast(np.ndarray, example.vectors["joint"])), None
    images = None
    if request.image is not None:
        from cxrsearch.image.decode import decode_image

        images = [decode_image(request.image)]

    texts = None if request.text is None else [query_text(request.text)]
    bm25 = bm25_params(store, request.collection, request.mode)
    (vectors,) = encode_queries(encoder, request.mode, texts, images, batch_size=1, bm25=bm25)
    if ranked_by_label_score(request.mode, vectors, weights or fusion_weights(encoder)):
        # what ranked the hit is the label score (and BM25, which has no gradient): explain that
        return Target.label_score(cast(np.ndarray, vectors["label_probs"])), vectors
    key = {"text": "text", "image": "image", "text+image": "joint"}[request.mode]
    return Target.similarity(cast(np.ndarray, vectors[key])), vectors


def ranked_by_label_score(mode_name: str, vectors: Mapping[str, Any], weights: FusionWeights) -> bool:
    """Whether a query of ``mode_name`` is ranked by the label vector with no dense list beside it
    (the default linear fusion: labels and BM25), so that the label score is what to explain."""
    if len(search_mode(mode_name).components) == 1:
        return False
    active = {c.name for c in active_components(mode_name, vectors, weights)}
    return "labels" in active and not active & DENSE_COMPONENTS


def resolve_hit(store: Store, request: ExplainRequest) -> tuple[Point, tuple[str, ...]]:
    """The hit's point (with vectors) and notices (e.g. which of a study's points was chosen)."""
    point = find_example(store, request.collection, request.hit)
    notices: list[str] = []
    image_id, study_id = example_keys(request.hit)
    if study_id is not None and image_id is None:
        siblings = store.count(request.collection, Filter(study_ids=(study_id,)))
        if siblings > 1:
            chosen = point.payload.get("image_id") or point.id
            notices.append(
                f"study {study_id} has {siblings} points; explaining {chosen} "
                "(pass an image id or point id from `cxrsearch search` for another)"
            )
    return point, tuple(notices)


def vector_scores(target: Target, point: Point) -> dict[str, float]:
    """Cosine of the query vector with each stored vector of the hit (what search ranked by)."""
    if target.kind != "similarity" or target.query is None:
        return {}
    out = {}
    for name, vector in sorted(point.vectors.items()):
        if isinstance(vector, SparseVector):  # BM25 terms: not a point of the embedding space
            continue
        vec = np.asarray(vector, dtype=np.float64)
        norm = float(np.linalg.norm(vec))
        if vec.shape == target.query.shape and norm > 0:
            out[name] = float(vec @ target.query / norm)
    return out
