"""Translate a :class:`~cxrsearch.store.base.Filter` into each backend's filter model.

The meaning lives in :meth:`Filter.clauses` (``all`` / ``any`` / ``none`` of some values on a payload
field); here each clause becomes Qdrant conditions, once per backend, with the same structure:

- ``all``  -> one ``must`` condition ``match: {value: v}`` per value,
- ``any``  -> one ``must`` condition ``match: {any: [...]}``,
- ``none`` -> one ``must_not`` condition ``match: {any: [...]}``.

A Qdrant match on an array field holds when *any* element matches, which is exactly the set
semantics above (and what :meth:`Filter.matches` computes in Python).
"""

from __future__ import annotations

from typing import Any

from cxrsearch.store.base import Filter


def to_edge(flt: Filter | None) -> Any:
    """``qdrant_edge.Filter`` (or ``None`` when nothing is filtered)."""
    if flt is None or flt.is_empty():
        return None
    import qdrant_edge as qe

    must: list[Any] = []
    must_not: list[Any] = []
    for clause in flt.clauses():
        if clause.mode == "all":
            must.extend(qe.FieldCondition(clause.key, match=qe.MatchValue(v)) for v in clause.values)
        elif clause.mode == "any":
            must.append(qe.FieldCondition(clause.key, match=qe.MatchAny(list(clause.values))))
        else:
            must_not.append(qe.FieldCondition(clause.key, match=qe.MatchAny(list(clause.values))))
    return qe.Filter(must=must or None, must_not=must_not or None)


def to_client(flt: Filter | None) -> Any:
    """``qdrant_client.models.Filter`` (or ``None`` when nothing is filtered)."""
    if flt is None or flt.is_empty():
        return None
    from qdrant_client import models

    must: list[Any] = []
    must_not: list[Any] = []
    for clause in flt.clauses():
        if clause.mode == "all":
            must.extend(models.FieldCondition(key=clause.key, match=models.MatchValue(value=v)) for v in clause.values)
        elif clause.mode == "any":
            must.append(models.FieldCondition(key=clause.key, match=models.MatchAny(any=list(clause.values))))
        else:
            must_not.append(models.FieldCondition(key=clause.key, match=models.MatchAny(any=list(clause.values))))
    return models.Filter(must=must or None, must_not=must_not or None)
