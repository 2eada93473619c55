"""Why a hit ranked where it did under a fused (hybrid text) query: each component's own evidence.

A text query is ranked by fusing several components inside the engine (see :mod:`cxrsearch.search.modes`):
weighted RRF, or the linear fusion (the weighted sum of the components' normalised scores).
The attributions of :mod:`.attribution` and :mod:`.tokens` explain the *dense* part (the query
embedding against the hit, through the model); this module adds the rest, from the same store
queries and vectors the search used:

- every component's own rank and score for the hit, and its weight (the fused score's arithmetic:
  RRF adds, per component, a share that falls with the hit's rank in that component's list; the
  linear fusion adds ``coefficient * score`` per component, its ``share``, the coefficient being the
  weight scaled to the query by :func:`~cxrsearch.search.modes.fusion_coefficients`);
- ``bm25``: the query terms (after negation marking) the hit's report contains, with the report's
  BM25 term weight, and the query terms it lacks (a negated mention is another term:
  ``noeffusion`` does not match ``effusion``);
- ``labels``: the labels that carry the label vectors' score, largest first: ``q_i * h_i`` of the
  query's and the hit's predicted label probabilities under the dot product of current
  collections, ``q_i * h_i / (|q| |h|)`` under the cosine of collections made before it.

No filters are applied here: ``explain`` takes none, so ranks are within the whole collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from cxrsearch.search.modes import DENSE_COMPONENTS, FusionWeights, component_ranks, mode, run_query
from cxrsearch.store.base import Point, SparseVector, Store
from cxrsearch.store.schema import Bm25Spec
from cxrsearch.text.bm25 import embed_query, mark_negations

DEPTH = 100
"""How deep each list is read for ranks (a hit below it has rank ``None`` there)."""


@dataclass(frozen=True)
class FusionEvidence:
    """The fused score of the hit (``rank``/``score`` in the fused list, ``None`` below :data:`DEPTH`),
    the ``fusion`` (``"rrf"``, ``"linear"``), the weights and where they came from, and per component:
    ``rank``, ``score``, ``weight`` (linear: also ``coefficient`` and ``share``) and its ``evidence``
    (matched terms, label contributions)."""

    rank: int | None
    score: float | None
    weights_source: str
    components: Mapping[str, Mapping[str, Any]]
    fusion: str = "rrf"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": self.score,
            "fusion": self.fusion,
            "weights_source": self.weights_source,
            "components": {name: dict(parts) for name, parts in self.components.items()},
        }

    @property
    def explained_part(self) -> str | None:
        """Which part of the fused score the attributions explain: ``"dense"`` when a dense list takes
        part (the cosine is explained), else ``"labels"`` when the label vector does (the label
        score is), else ``None`` (only BM25, which has no gradient)."""
        if DENSE_COMPONENTS & set(self.components):
            return "dense"
        return "labels" if "labels" in self.components else None

    def headline(self) -> str:
        """One sentence: where the hit is in the fused list, how the fused score is made, and which
        part the attributions explain (what ``cxrsearch explain`` and the web page print above
        :meth:`rows`)."""
        where = f"rank {self.rank}, fused score {self.score:.4f}" if self.rank is not None else f"below rank {DEPTH}"
        how = (
            "the sum of the components' shares, share = coefficient x score"
            if self.fusion == "linear"
            else "weighted RRF of the components' ranks"
        )
        attributions = {
            "dense": "The attributions explain the dense part.",
            "labels": "The attributions explain the labels part (its share over its weight).",
            None: "No dense list takes part: the attributions explain the model's similarity, not this rank.",
        }[self.explained_part]
        return f"The hit is at {where} ({how}; weights {self.weights_source}). {attributions}"

    def rows(self) -> list[FusionRow]:
        """The fusion table, a row per component (``share`` only under the linear fusion)."""
        out = []
        for name, part in self.components.items():
            out.append(
                FusionRow(
                    component=name,
                    weight=float(part["weight"]),
                    rank=part["rank"],
                    score=part["score"],
                    share=part.get("share"),
                    evidence=_evidence_text(name, part.get("evidence")),
                )
            )
        return out


@dataclass(frozen=True)
class FusionRow:
    """One component's row of the fusion table: its weight, its rank and score for the hit (``None``
    when the hit is not in its list), its share of the fused score (linear fusion) and its evidence
    in words (matched BM25 terms, the labels that matched)."""

    component: str
    weight: float
    rank: int | None
    score: float | None
    share: float | None
    evidence: str


def _evidence_text(component: str, evidence: Any) -> str:
    if component == "bm25" and evidence is not None:
        words = ", ".join(f"{m['term']} ({m['report_weight']:.2f})" for m in evidence["matched"]) or "none"
        missing = f"; not in the report: {', '.join(evidence['missing'])}" if evidence["missing"] else ""
        return f"matched: {words}{missing}"
    if component == "labels" and evidence:
        return ", ".join(
            f"{e['label']} (query {e['query_prob']:.2f}, hit {e['hit_prob'] or 0:.2f})" for e in evidence[:3]
        )
    return "token and pixel attributions" if component in DENSE_COMPONENTS else "-"


def fusion_evidence(
    store: Store,
    collection: str,
    mode_name: str,
    vectors: Mapping[str, Any],
    point: Point,
    weights: FusionWeights,
    query_text: str | None,
    bm25: Bm25Spec | None,
    labels: tuple[str, ...],
) -> FusionEvidence | None:
    """The evidence for ``point`` under the query ``vectors`` of ``mode_name``; ``None`` for a mode
    with one component (its score is the cosine the attributions explain)."""
    if len(mode(mode_name).components) == 1:
        return None
    fused = run_query(store, collection, mode_name, vectors, None, DEPTH, weights)
    rank, score = next(((r, h.score) for r, h in enumerate(fused, start=1) if h.id == point.id), (None, None))
    (ranks,) = component_ranks(store, collection, mode_name, vectors, None, [point], weights, DEPTH)
    components: dict[str, dict[str, Any]] = {name: dict(parts) for name, parts in ranks.items()}
    for parts in components.values():
        if "coefficient" in parts:  # linear: the part of the fused score this component gives
            parts["share"] = None if parts["score"] is None else parts["coefficient"] * parts["score"]
    if "bm25" in components and query_text is not None and bm25 is not None:
        components["bm25"]["evidence"] = matched_terms(
            query_text, cast("SparseVector | None", point.vectors.get("bm25")), bm25
        )
    if "labels" in components:
        components["labels"]["evidence"] = label_contributions(
            vectors.get("label_probs"),
            point.vectors.get("label_probs"),
            labels,
            point.payload.get("probs") or {},
            distance=store.collection_info(collection).schema.vectors.get("label_probs", "dot"),
        )
    return FusionEvidence(rank, score, weights.source, components, weights.fusion)


def matched_terms(query_text: str, stored: SparseVector | None, bm25: Bm25Spec) -> dict[str, Any]:
    """Query words (negation-marked, as BM25 indexed them) found in and missing from the hit's report."""
    weights = dict(zip(stored.indices, stored.values)) if stored is not None else {}
    matched, missing = [], []
    for word in dict.fromkeys(mark_negations(query_text).split()):
        vector = embed_query(word, bm25)
        if vector is None:  # a stopword or punctuation: not a BM25 term
            continue
        term = vector.indices[0]
        if term in weights:
            matched.append({"term": word, "report_weight": round(float(weights[term]), 4)})
        else:
            missing.append(word)
    return {"matched": matched, "missing": missing}


def label_contributions(
    query: Any,
    stored: Any,
    labels: tuple[str, ...],
    hit_probs: Mapping[str, float],
    top: int = 5,
    distance: str = "dot",
) -> list[dict[str, Any]]:
    """The labels contributing most to the score of the query's label probabilities against the
    hit's stored label vector under the collection's ``distance`` (``"dot"``: ``q_i * h_i``;
    ``"cosine"``: the same over ``|q| |h|``, the engine having stored the vector normalised);
    ``hit_probs`` are the hit's probabilities as its payload holds them."""
    if query is None or stored is None:
        return []
    q, h = np.asarray(query, dtype=np.float64), np.asarray(stored, dtype=np.float64)
    if q.shape != h.shape or q.shape[0] != len(labels):
        return []
    norm = 1.0
    if distance == "cosine":
        norm = float(np.linalg.norm(q) * np.linalg.norm(h)) or 1.0
    shares = q * h / norm
    order = np.argsort(-shares, kind="stable")[:top]
    return [
        {
            "label": labels[i],
            "query_prob": round(float(q[i]), 4),
            "hit_prob": None if labels[i] not in hit_probs else round(float(hit_probs[labels[i]]), 4),
            "share": round(float(shares[i]), 4),
        }
        for i in order
    ]
