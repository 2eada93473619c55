"""The scalar an explanation explains: :class:`Target`.

Two kinds, both computed from a :class:`~cxrsearch.model.output.ModelOutput` of the **hit** (its
radiograph and its report through the whole model: towers, projections, fusion layers, heads):

``similarity``
    ``cos(q, joint_embedding(hit))``: the query vector ``q`` (``[D]``, L2-normalised: the query's
    joint embedding, see ``docs/explain.md``) against the hit's L2-normalised joint embedding.
``label``
    the hit's logit for one label (``sigmoid`` of it is the probability in the search table).
``labels``
    the label score a text search ranked the hit by: ``sum_i w_i * sigmoid(logit_i(hit))`` with
    ``w`` the query's label probabilities over their sum, which is the ``labels`` part of the linear
    fusion (its share: coefficient times the dot product of the two label vectors).

A target maps a batch of ``N`` outputs to ``N`` scores, which is what Captum's attribution methods
differentiate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import QueryError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.model.output import ModelOutput

KINDS = ("similarity", "label", "labels")


@dataclass(frozen=True)
class Target:
    """What is explained.

    Attributes:
        kind: ``"similarity"`` or ``"label"``.
        query: ``float32 [D]`` unit query vector (``similarity`` only).
        label: the label name (``label`` only).
        label_index: its column in the model's logits (``label`` only).
        label_weights: ``float32 [L]`` the query's label probabilities over their sum (``labels`` only).
    """

    kind: str
    query: np.ndarray | None = None
    label: str | None = None
    label_index: int | None = None
    label_weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise QueryError(f"explanation target must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "similarity":
            vector = np.asarray(self.query, dtype=np.float32) if self.query is not None else None
            if vector is None or vector.ndim != 1 or not np.isfinite(vector).all() or not vector.any():
                raise QueryError("a similarity target needs a finite, non-zero query vector [D]")
            object.__setattr__(self, "query", vector / np.linalg.norm(vector))
        elif self.kind == "labels":
            weights = np.asarray(self.label_weights, dtype=np.float32) if self.label_weights is not None else None
            if weights is None or weights.ndim != 1 or not np.isfinite(weights).all() or (weights < 0).any():
                raise QueryError("a label-score target needs finite, non-negative label probabilities [L]")
            if not weights.sum() > 0:
                raise QueryError("a label-score target needs a query that asks for some label")
            object.__setattr__(self, "label_weights", weights / weights.sum())
        elif self.label is None or self.label_index is None:
            raise QueryError("a label target needs the label name and its index")

    @classmethod
    def similarity(cls, query: np.ndarray) -> Target:
        """Cosine of ``query`` with the hit's joint embedding (``query`` is normalised here)."""
        return cls(kind="similarity", query=np.asarray(query, dtype=np.float32))

    @classmethod
    def label_logit(cls, labels: Sequence[str], label: str) -> Target:
        """The logit of ``label``; :class:`QueryError` listing the model's labels when it has none such."""
        wanted = " ".join(str(label).split()).casefold()
        names = [" ".join(name.split()).casefold() for name in labels]
        if wanted not in names:
            raise QueryError(f"the model has no label {label!r} (it has: {', '.join(labels)})")
        index = names.index(wanted)
        return cls(kind="label", label=labels[index], label_index=index)

    @classmethod
    def label_score(cls, query_probs: np.ndarray) -> Target:
        """The hit's predicted probabilities weighted by the query's (``query_probs``, normalised to
        sum 1 here): the ``labels`` score of the linear fusion."""
        return cls(kind="labels", label_weights=np.asarray(query_probs, dtype=np.float32))

    def describe(self) -> str:
        """``"cosine similarity (joint embeddings)"``, ``"logit of cardiomegaly"`` or the label score."""
        if self.kind == "similarity":
            return "cosine similarity of the query and hit joint embeddings"
        if self.kind == "labels":
            return (
                "label score: the hit's predicted label probabilities weighted by the query's "
                "(what the label vector ranked it by; under the linear fusion, its share over its weight)"
            )
        return f"logit of label {self.label}"

    def __call__(self, out: ModelOutput) -> torch.Tensor:
        """``[N]`` scores for a batch of ``N`` model outputs (differentiable)."""
        import torch

        if self.kind == "similarity":
            query = torch.as_tensor(self.query, dtype=out.joint_embedding.dtype, device=out.joint_embedding.device)
            if query.shape[0] != out.joint_embedding.shape[1]:
                raise QueryError(
                    f"query vector has {query.shape[0]} dimensions, "
                    f"the model's joint space {out.joint_embedding.shape[1]}"
                )
            return out.joint_embedding @ query
        if self.kind == "labels":
            weights = torch.as_tensor(self.label_weights, dtype=out.logits.dtype, device=out.logits.device)
            if weights.shape[0] != out.logits.shape[1]:
                raise QueryError(
                    f"the query has {weights.shape[0]} label probabilities, the model {out.logits.shape[1]} labels"
                )
            return torch.sigmoid(out.logits) @ weights
        return out.logits[:, self.label_index]
