"""The query-mode table: what each search mode reads, which query vectors it makes, which named
vectors of a collection it searches (Qdrant prefetches) and how their lists are fused.

``search``, ``explain``, ``evaluate`` and the CLI all use this table, so a mode is written down once:
evaluate encodes its queries in batches with :func:`encode_queries` and sends exactly the store
queries of :func:`run_query` that ``cxrsearch search`` sends for one query.

=============  ===================  ==========================================================
mode           inputs               components (named vector <- query vector), fusion
=============  ===================  ==========================================================
``text``       a text               ``text`` <- text embedding, ``image`` <- text embedding
                                    (cross-modal), fused by reciprocal rank fusion in Qdrant
``image``      a radiograph         ``image`` <- image embedding
``text+image`` both                 ``joint`` <- joint embedding of the pair
``like``       an indexed case      ``joint`` <- the example's stored joint vector
=============  ===================  ==========================================================

Every query is filtered inside the engine (see docs/search.md); nothing is re-ranked in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import ConfigError, ModelError, QueryError
from cxrsearch.store.base import Filter, Hit, Store

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.image.decoded import DecodedImage
    from cxrsearch.model.encode import Encoder


@dataclass(frozen=True)
class Component:
    """One input list of a query: the collection's named ``vector`` searched with the query
    vector ``query`` (a key of :func:`encode_queries`' output). ``name`` labels it in ``--json``."""

    name: str
    vector: str
    query: str


@dataclass(frozen=True)
class Mode:
    """A search mode: its ``inputs`` (``"text"``, ``"image"``), its ``components`` (one -> a plain
    nearest-neighbour query, several -> prefetches fused by RRF) and its name in evaluation reports."""

    name: str
    evaluate_name: str
    inputs: tuple[str, ...]
    components: tuple[Component, ...]

    @property
    def queries(self) -> tuple[str, ...]:
        """The query vectors this mode needs, in component order, each once."""
        return tuple(dict.fromkeys(c.query for c in self.components))


MODES: dict[str, Mode] = {
    "text": Mode("text", "text->case", ("text",),
                 (Component("text", "text", "text"), Component("image", "image", "text"))),
    "image": Mode("image", "image->case", ("image",), (Component("image", "image", "image"),)),
    "text+image": Mode("text+image", "image+text->case", ("image", "text"), (Component("joint", "joint", "joint"),)),
    "like": Mode("like", "case->case", (), (Component("joint", "joint", "example"),)),
}
"""The table above. ``like`` queries with a stored vector, so it needs no model."""

BY_EVALUATE_NAME: dict[str, Mode] = {mode.evaluate_name: mode for mode in MODES.values()}


def mode(name: str) -> Mode:
    """The mode called ``name`` (search name such as ``"text"`` or evaluation name ``"text->case"``)."""
    found = MODES.get(name) or BY_EVALUATE_NAME.get(name)
    if found is None:
        raise ConfigError(f"unknown search mode {name!r} (modes: {', '.join(MODES)})")
    return found


QueryVectors = Mapping[str, np.ndarray]
"""One query's vectors by query key (``"text"``, ``"image"``, ``"joint"``, ``"example"``)."""


def encode_queries(encoder: Encoder, mode_name: str, texts: Sequence[str] | None = None,
                   images: Sequence[DecodedImage] | None = None, batch_size: int = 32) -> list[dict[str, np.ndarray]]:
    """The query vectors of ``mode_name`` for each (text, image) query, encoded in batches.

    ``texts`` are query texts as the model reads them (cleaned, see :func:`query_text`); one query
    per element, and both sequences of the same length when the mode reads both.
    """
    m = mode(mode_name)
    if m.name == "like":
        raise ConfigError("like queries use a stored vector: nothing to encode")
    for need, given in (("text", texts), ("image", images)):
        if (need in m.inputs) != (given is not None):
            raise ConfigError(f"a {m.name} query reads {' and '.join(m.inputs)}, not the inputs given")
    count = len(texts) if texts is not None else len(images or ())
    if texts is not None and images is not None and len(texts) != len(images):
        raise ConfigError(f"{len(texts)} texts but {len(images)} images for {m.name} queries")
    if count == 0:
        return []
    encoded = encoder.encode(images=list(images) if images is not None else None,
                             texts=list(texts) if texts is not None else None, batch_size=batch_size)
    by_key = {"text": encoded.text, "image": encoded.image, "joint": encoded.joint}
    out: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for key in m.queries:
        matrix = by_key.get(key)
        if matrix is None:  # pragma: no cover - the Encoder returns the modalities it was given
            raise ModelError(f"the model returned no {key} embedding")
        for row, vectors in enumerate(out):
            vectors[key] = matrix[row]
    return out


def run_query(store: Store, collection: str, mode_name: str, vectors: QueryVectors, flt: Filter | None,
              limit: int) -> list[Hit]:
    """The store query of ``mode_name`` (see the table): one component -> nearest neighbours of
    its named vector; several -> one prefetch each, fused by RRF inside the engine."""
    m = mode(mode_name)
    missing = [key for key in m.queries if key not in vectors]
    if missing:
        raise QueryError(f"a {m.name} query needs the query vector(s) {', '.join(missing)}")
    if len(m.components) == 1:
        (component,) = m.components
        return store.search(collection, component.vector, vectors[component.query], flt, limit)
    return store.search_fused(collection, [(c.vector, vectors[c.query]) for c in m.components], flt, limit)


def query_text(text: str | None) -> str:
    """A query text as the model reads reports (the same cleaning, see :mod:`cxrsearch.text.report`)."""
    from cxrsearch.text.report import report_text

    cleaned = report_text(text, None)
    if not cleaned:
        raise QueryError(f"--text {text!r} has no words left after cleaning")
    return cleaned
