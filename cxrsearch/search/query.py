"""``search(spec, store, collection, checkpoint)``: a :class:`QuerySpec` -> query vectors -> hits.

Which vectors each mode makes and which named vectors it searches is the query-mode table of
:mod:`cxrsearch.search.modes` (one place for search, explain and evaluate); every query is
filtered inside the engine (see docs/search.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cxrsearch.data.labels import label_names, negated_labels
from cxrsearch.errors import ModelError, QueryError, StoreError
from cxrsearch.index.record import check_images_trained, recorded_model
from cxrsearch.search.collapse import fetch_for_collapse
from cxrsearch.search.modes import MODES as MODE_TABLE
from cxrsearch.search.modes import (
    bm25_params,
    component_ranks,
    encode_queries,
    fusion_weights,
    mode,
    query_text,
    run_query,
)
from cxrsearch.search.spec import QuerySpec, example_keys
from cxrsearch.search.vocabulary import for_collection
from cxrsearch.store.base import Filter, Hit, Point, Store, StoredVector, point_id

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint import Checkpoint
    from cxrsearch.model.encode import Encoder


def search(
    spec: QuerySpec,
    store: Store,
    collection: str,
    checkpoint: Checkpoint | Encoder | str | Path | None = None,
    with_components: bool = False,
    runtime: str = "auto",
) -> list[Hit]:
    """The ``spec.k`` best hits for ``spec`` in ``collection``, best first; every hit passes the filters.

    ``with_components``: for a fused (hybrid text) query, each hit's ``components`` holds every
    component's own rank and score (what the fused score was made of; :func:`component_ranks`).

    ``checkpoint`` (a loaded checkpoint, an Encoder, or a checkpoint directory) must be the one
    the collection was indexed with; ``None`` loads the one recorded in the collection's points.
    ``like`` queries need no checkpoint. A checkpoint loaded here loads only the towers the mode
    reads; ``runtime`` (``"auto"``: a text query runs in numpy, without torch, where the architecture
    allows; ``"torch"``: the reference) is passed to ``load_checkpoint``.
    """
    vectors, flt, encoder = _query(spec, store, collection, checkpoint, runtime)
    weights = fusion_weights(encoder)
    hits = _checked(run_query(store, collection, spec.mode, vectors, flt, spec.k, weights), flt, collection)
    if with_components and len(mode(spec.mode).components) > 1:
        ranks = component_ranks(store, collection, spec.mode, vectors, flt, hits, weights)
        hits = [replace(hit, components=record) for hit, record in zip(hits, ranks)]
    return hits


def search_to_show(
    spec: QuerySpec,
    store: Store,
    collection: str,
    checkpoint: Checkpoint | Encoder | str | Path | None = None,
    collapse: bool = True,
    diverse: float | None = None,
    with_components: bool = False,
) -> list[Hit]:
    """The hits ``cxrsearch search`` (and the web page) shows ``spec.k`` of: :func:`search`, or
    :func:`search_diverse` with ``diverse``; with ``collapse``, fetched deeper so that ``spec.k``
    groups of identical reports remain (:func:`cxrsearch.search.collapse.fetch_for_collapse`)."""

    def fetch(limit: int) -> list[Hit]:
        asked = replace(spec, k=limit)
        if diverse is not None:
            return search_diverse(asked, store, collection, diverse, checkpoint)
        return search(asked, store, collection, checkpoint, with_components=with_components)

    return fetch_for_collapse(fetch, spec.k, collapse)


def collection_notices(spec: QuerySpec, store: Store, collection: str) -> list[str]:
    """What the user should know about ``collection`` for this query: a text query on a collection
    whose label vectors are compared by cosine (made before the dot product) ranks worse."""
    if not _uses_label_vector(spec):
        return []
    if store.collection_info(collection).schema.vectors.get("label_probs") != "cosine":
        return []
    return [
        f"collection {collection!r} compares label vectors by cosine (made by an older cxrsearch), which "
        "ranks reports the model was unsure about too high: index again into a fresh collection for the "
        "dot product (docs/search.md)"
    ]


def _uses_label_vector(spec: QuerySpec) -> bool:
    """Whether ``spec``'s mode searches the label vector (a text query's ``labels`` component)."""
    return any(c.vector == "label_probs" for c in mode(spec.mode).components)


def query_encoder(
    spec: QuerySpec, store: Store, collection: str, checkpoint: Checkpoint | Encoder | str | Path | None = None
) -> Encoder | None:
    """The Encoder a ``spec`` query runs with, loaded once (``None`` for ``like``, which reads a
    stored vector): pass it to :func:`search_to_show` and :func:`reading_notices` so that the search,
    its refetch and the notices share one loaded model."""
    if spec.mode == "like":
        return None
    return encoder_for(store, collection, checkpoint, towers=mode(spec.mode).inputs, runtime="auto")


UNSURE_BELOW = 0.4
"""A text query whose label vector (the label head's probabilities, negated labels dropped) holds no
label at this probability gets a notice: the model did not recognise what it asks for. Chosen on the
dev half of the short-query set (docs/evaluation.md): below 0.4 are all 15 of the 69 dev queries
whose most probable label is wrong, and 11 whose label is right."""


def reading_notices(
    spec: QuerySpec,
    store: Store,
    collection: str,
    checkpoint: Checkpoint | Encoder | str | Path | None = None,
) -> list[str]:
    """What the user should know about how the model read a text query: when no label of its label
    vector reaches :data:`UNSURE_BELOW` ("air around the lung": lung opacity 0.24), the hits follow a
    guess, and the notice names the guess. Nothing for other modes, for a query with a label filter
    (the filter says what is asked), or for a query that negates a label ("no pleural effusion": it
    asks for an absence, and the rest of its label vector is small by design)."""
    if spec.text is None or spec.image is not None or spec.all_labels or spec.any_labels:
        return []
    if not _uses_label_vector(spec):
        return []
    text = query_text(spec.text)
    if negated_labels(text):  # "no pleural effusion" asks for an absence, not for what is left
        return []
    encoder = query_encoder(spec, store, collection, checkpoint)
    if encoder is None:  # pragma: no cover - a like query has no text
        return []
    bm25 = bm25_params(store, collection, spec.mode)
    (vectors,) = encode_queries(encoder, spec.mode, [text], batch_size=1, bm25=bm25)
    notice = unsure_reading(spec.text, cast("Iterable[float] | None", vectors["label_probs"]), encoder.labels)
    return [] if notice is None else [notice]


def unsure_reading(text: str, probs: Iterable[float] | None, labels: Sequence[str]) -> str | None:
    """The notice for a text query whose label vector ``probs`` (over ``labels``) has no label at
    :data:`UNSURE_BELOW` or above, naming the three most probable; ``None`` when one reaches it, or
    when there is no label vector (every label negated)."""
    values = [float(p) for p in probs] if probs is not None else []
    if not any(values) or max(values) >= UNSURE_BELOW:
        return None
    order = sorted(range(len(values)), key=lambda j: -values[j])[:3]
    guess = ", ".join(f"{labels[j]} {values[j]:.2f}" for j in order)
    return (
        f"the model is unsure what {text!r} asks for: no label reaches {UNSURE_BELOW:.2f} (it reads it as "
        f"{guess}), so these hits may not hold what you mean; try radiology wording (a label name, "
        "`cxrsearch models info` lists them) or filter with --label"
    )


def encoder_for(
    store: Store,
    collection: str,
    checkpoint: Checkpoint | Encoder | str | Path | None,
    towers: Sequence[str] | None = None,
    runtime: str = "torch",
) -> Encoder:
    """An Encoder for ``checkpoint`` (default: the one the collection records), refusing a checkpoint
    whose weights differ from those that encoded the collection: their embeddings do not compare.

    ``towers``, ``runtime``: when the checkpoint is loaded here (a path), only these towers are
    loaded (a query needs the towers of its mode's inputs; default both), with this runtime
    (``"auto"``: a text-only load runs in numpy, without torch; see ``load_checkpoint``)."""
    from cxrsearch.model.encode import Encoder

    record = recorded_model(store, collection)
    given = checkpoint is not None
    if checkpoint is None:
        if record is None:
            raise QueryError(
                f"collection {collection!r} is empty: index it first, or pass --model CKPT", path=store.location
            )
        if not (Path(record.checkpoint) / "config.json").is_file():
            raise QueryError(
                f"the checkpoint this collection was indexed with is gone ({record.checkpoint}); "
                "pass --model CKPT (the same weights, e.g. a copy)",
                path=collection,
            )
        checkpoint = record.checkpoint
    try:
        encoder = checkpoint if isinstance(checkpoint, Encoder) else Encoder(checkpoint, towers=towers, runtime=runtime)
    except ModelError as exc:
        hint = "check the --model path" if given else "pass --model CKPT (the weights it was indexed with)"
        raise QueryError(f"cannot load the checkpoint ({exc}); {hint}", path=collection) from None
    if record is not None and encoder.fingerprint != record.fingerprint:
        raise QueryError(
            f"checkpoint {_where(encoder)} (fingerprint {str(encoder.fingerprint)[:12]}) is not the one collection "
            f"{collection!r} was indexed with ({record.checkpoint}, {record.fingerprint[:12]}): embeddings of "
            "different weights are not comparable; search with that checkpoint or re-index "
            "(`cxrsearch index --reindex`)",
            path=collection,
        )
    return encoder


def _query(
    spec: QuerySpec,
    store: Store,
    collection: str,
    checkpoint: Checkpoint | Encoder | str | Path | None,
    runtime: str = "auto",
) -> tuple[dict, Filter, Encoder | None]:
    """``spec``'s query vectors (see :mod:`cxrsearch.search.modes`), its filter and the encoder
    that made them. ``like``: the example's stored joint vector, its own study left out, no model.
    Label filters are checked against the collection's vocabulary first."""
    spec = for_collection(spec, store, collection)
    if spec.mode == "like":
        example = find_example(store, collection, spec.like or "", with_vectors=False)
        study = str(example.payload.get("study_id", ""))
        # the engine reads the example's vector itself: a --like query handles no vector (nor numpy)
        example_vector = {"example": StoredVector(example.id)}
        return example_vector, spec.filter(exclude_study_ids=(study,) if study else ()), None
    encoder = encoder_for(store, collection, checkpoint, towers=mode(spec.mode).inputs, runtime=runtime)
    if spec.image is not None and encoder.checkpoint is not None:
        check_images_trained(encoder.checkpoint.info, "searching by radiograph")
    images = [_decode(spec.image)] if spec.image is not None else None
    texts = [query_text(spec.text)] if spec.text is not None else None
    bm25 = bm25_params(store, collection, spec.mode)
    (vectors,) = encode_queries(encoder, spec.mode, texts, images, batch_size=1, bm25=bm25)
    return vectors, spec.filter(), encoder


def find_example(store: Store, collection: str, like: str, with_vectors: bool = True) -> Point:
    """The point ``--like`` names (with its vectors unless ``with_vectors`` is False): a point id, an
    image id, or a study id (its image point with the smallest image id, else its report point)."""
    image_id, study_id = example_keys(like)
    candidates = [like] if _is_uuid(like) else []
    candidates += [point_id(collection, key) for key in (image_id, study_id) if key]
    found = store.retrieve(collection, candidates, with_vectors=with_vectors) if candidates else []
    if found:
        return found[0]
    if study_id is not None:
        points = list(store.scroll(collection, Filter(study_ids=(study_id,)), with_vectors=with_vectors))
        if points:
            return min(points, key=lambda p: str(p.payload.get("image_id") or ""))
    raise QueryError(
        f"no indexed case {like!r} in collection {collection!r} (give a point id, an image id such "
        "as CXR3029_IM-1404-1001, or a study id such as CXR3029)",
        path=store.location,
    )


def _decode(path: Path):
    from cxrsearch.image.decode import decode_image

    return decode_image(path)


def _checked(hits: list[Hit], flt: Filter, collection: str) -> list[Hit]:
    """The engine applies the filter; this re-checks every hit so that a backend bug can never show
    a user a case that violates it."""
    for hit in hits:
        if not flt.matches(hit.payload):
            raise StoreError(
                f"the store returned point {hit.id}, which does not pass the query filter "
                "(a backend bug; please report it)",
                path=collection,
            )
    return hits


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _where(encoder: Encoder) -> str:
    return str(encoder.checkpoint.path) if encoder.checkpoint is not None else "(in-memory model)"


DIVERSE_MODES = tuple(name for name, m in MODE_TABLE.items() if len(m.components) == 1)
"""The modes :func:`search_diverse` serves: one named vector each (MMR re-ranks one nearest-neighbour list)."""


def search_diverse(
    spec: QuerySpec,
    store: Store,
    collection: str,
    diversity: float,
    checkpoint: Checkpoint | Encoder | str | Path | None = None,
    candidates: int | None = None,
    runtime: str = "auto",
) -> list[Hit]:
    """Like :func:`search`, but the ``spec.k`` hits are chosen by maximal marginal relevance
    (:meth:`Store.search_diverse`): ``diversity`` 0 is the plain order, higher values trade relevance
    for hits unlike those already chosen. Single-vector modes only (:data:`DIVERSE_MODES`): a text
    query fuses several rankings, which MMR (one query vector, one named vector) cannot re-rank."""
    if spec.mode not in DIVERSE_MODES:
        raise QueryError(
            f"--diverse applies to image, text+image and --like queries, not {spec.mode} queries "
            "(a text query fuses several rankings)"
        )
    (component,) = mode(spec.mode).components
    vectors, flt, _ = _query(spec, store, collection, checkpoint, runtime)
    hits = store.search_diverse(
        collection, component.vector, vectors[component.query], flt, spec.k, diversity=diversity, candidates=candidates
    )
    return _checked(hits, flt, collection)


def facets(spec: QuerySpec, store: Store, collection: str) -> dict[str, int]:
    """Label -> number of points (radiographs and report-only cases) passing ``spec``'s filters that
    carry it, over the whole collection (not only the hits), most frequent first. The labels are
    ``labels_true`` (MeSH) with ``spec.truth``, else the predicted ``labels``."""

    spec = for_collection(spec, store, collection)
    flt = spec.filter()
    counts = store.facet(
        collection,
        flt.label_field,
        flt if not flt.is_empty() else None,
        limit=max(50, len(label_names()), len(spec.vocabulary or ())),
    )
    return dict(counts)
