"""The scalar an explanation explains: :class:`Target`.

Two kinds, both computed from a :class:`~cxrsearch.model.output.ModelOutput` of the **hit** (its
radiograph and its report through the whole model: towers, projections, fusion layers, heads):

``similarity``
    ``cos(q, joint_embedding(hit))``: the query vector ``q`` (``[D]``, L2-normalised: the query's
    joint embedding, see ``docs/explain.md``) against the hit's L2-normalised joint embedding.
``label``
    the hit's logit for one label (``sigmoid`` of it is the probability in the search table).

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

KINDS = ("similarity", "label")


@dataclass(frozen=True)
class Target:
    """What is explained.

    Attributes:
        kind: ``"similarity"`` or ``"label"``.
        query: ``float32 [D]`` unit query vector (``similarity`` only).
        label: the label name (``label`` only).
        label_index: its column in the model's logits (``label`` only).
    """

    kind: str
    query: np.ndarray | None = None
    label: str | None = None
    label_index: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise QueryError(f"explanation target must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "similarity":
            vector = np.asarray(self.query, dtype=np.float32) if self.query is not None else None
            if vector is None or vector.ndim != 1 or not np.isfinite(vector).all() or not vector.any():
                raise QueryError("a similarity target needs a finite, non-zero query vector [D]")
            object.__setattr__(self, "query", vector / np.linalg.norm(vector))
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

    def describe(self) -> str:
        """``"cosine similarity (joint embeddings)"`` or ``"logit of cardiomegaly"``."""
        if self.kind == "similarity":
            return "cosine similarity of the query and hit joint embeddings"
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
        return out.logits[:, self.label_index]
