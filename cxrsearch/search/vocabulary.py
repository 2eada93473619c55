"""Which labels a collection knows: its checkpoint's vocabulary, not the packaged file.

A checkpoint trained with another vocabulary stores ``labels``/``probs`` under its own names, so a
label filter is only meaningful in that vocabulary. The collection's points carry it: every point's
``probs`` payload holds one probability per label of the checkpoint that encoded it (and a
collection holds one checkpoint's points only, :func:`cxrsearch.index.record.check_same_model`).
"""

from __future__ import annotations

from dataclasses import replace

from cxrsearch.errors import QueryError
from cxrsearch.search.spec import QuerySpec
from cxrsearch.store.base import Store


def collection_labels(store: Store, collection: str) -> tuple[str, ...] | None:
    """The label names of ``collection``'s checkpoint (its first point's ``probs``), ``None`` when
    the collection is empty or its points carry no probabilities."""
    for point in store.scroll(collection, batch=1):
        probs = point.payload.get("probs")
        return tuple(str(name) for name in probs) if isinstance(probs, dict) and probs else None
    return None


def for_collection(spec: QuerySpec, store: Store, collection: str) -> QuerySpec:
    """``spec`` checked against ``collection``'s vocabulary: QueryError naming the collection and
    listing its labels when a filter label is not one of them."""
    if not (spec.all_labels or spec.any_labels or spec.not_labels):
        return spec  # nothing to check: no need to read the collection
    labels = collection_labels(store, collection)
    if labels is None or spec.vocabulary == labels:
        return spec
    try:
        return replace(spec, vocabulary=labels)
    except QueryError as exc:
        raise QueryError(
            f"{exc.message} (the vocabulary of the checkpoint that indexed collection {collection!r})"
        ) from None
