"""Translate a :class:`~cxrsearch.store.base.Filter` into each backend's filter model.

The meaning lives in :meth:`Filter.clauses` (``all`` / ``any`` / ``none`` of some values on a payload
field); here each clause becomes Qdrant conditions, once per backend, with the same structure:

- ``all``  -> one ``must`` condition ``match: {value: v}`` per value,
- ``any``  -> one ``must`` condition ``match: {any: [...]}`` (``match: {value: v}`` for one value),
- ``none`` -> one ``must_not`` condition ``match: {any: [...]}`` (``match: {value: v}`` for one value).

A one-value ``any`` is the common case (``--view PA``, ``split``, one ``--not-label``): the engine
checks ``match: {value}`` faster than a one-element ``match: {any}``. On the 100k-point store of
``benchmarks/bench_store.py`` (``EdgeStore.search``, old and new translation interleaved, p50), a
``--view PA`` query took 2.8 ms instead of 4.2 ms and ``any(cardiomegaly, effusion), not devices,
PA`` 2.9-3.0 ms instead of 3.2-3.5 ms.

A Qdrant match on an array field holds when *any* element matches, which is exactly the set
semantics above (and what :meth:`Filter.matches` computes in Python).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cxrsearch.store.base import Filter


def to_edge(flt: Filter | None) -> Any:
    """``qdrant_edge.Filter`` (or ``None`` when nothing is filtered)."""
    if flt is None or flt.is_empty():
        return None
    import qdrant_edge as qe

    return _translate(
        flt,
        lambda key, v: qe.FieldCondition(key, match=qe.MatchValue(v)),
        lambda key, vs: qe.FieldCondition(key, match=qe.MatchAny(vs)),
        qe.Filter,
    )


def to_client(flt: Filter | None) -> Any:
    """``qdrant_client.models.Filter`` (or ``None`` when nothing is filtered)."""
    if flt is None or flt.is_empty():
        return None
    from qdrant_client import models

    return _translate(
        flt,
        lambda key, v: models.FieldCondition(key=key, match=models.MatchValue(value=v)),
        lambda key, vs: models.FieldCondition(key=key, match=models.MatchAny(any=vs)),
        models.Filter,
    )


def _translate(
    flt: Filter,
    match_value: Callable[[str, Any], Any],
    match_any: Callable[[str, list], Any],
    make_filter: Callable[..., Any],
) -> Any:
    """The clause walk both backends share; the three callables build the backend's objects."""
    must: list[Any] = []
    must_not: list[Any] = []
    for clause in flt.clauses():
        if clause.mode == "all":
            must.extend(match_value(clause.key, v) for v in clause.values)
        elif clause.mode == "any":
            must.append(_match(clause.values, clause.key, match_value, match_any))
        else:
            must_not.append(_match(clause.values, clause.key, match_value, match_any))
    return make_filter(must=must or None, must_not=must_not or None)


def _match(
    values: tuple[Any, ...], key: str, match_value: Callable[[str, Any], Any], match_any: Callable[[str, list], Any]
) -> Any:
    """``match: {value}`` for one value (the engine checks it faster), else ``match: {any}``."""
    return match_value(key, values[0]) if len(values) == 1 else match_any(key, list(values))
