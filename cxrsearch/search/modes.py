"""The query-mode table: what each search mode reads, which query vectors it makes, which named
vectors of a collection it searches (Qdrant prefetches) and how their lists are fused.

``search``, ``explain``, ``evaluate`` and the CLI all use this table, so a mode is written down once:
evaluate encodes its queries in batches with :func:`encode_queries` and sends exactly the store
queries of :func:`run_query` that ``cxrsearch search`` sends for one query.

=============  ===================  ==========================================================
mode           inputs               components (named vector <- query vector), fusion
=============  ===================  ==========================================================
``text``       a text               hybrid: ``text`` <- text embedding (dense), ``bm25`` <- the
                                    query's BM25 terms (sparse, IDF in the engine),
                                    ``label_probs`` <- the label head's probabilities for the
                                    query (0 for a label the query names only in a
                                    negation), and ``image`` <- text embedding (cross-modal; only
                                    for checkpoints trained with images), fused in Qdrant:
                                    by default the linear fusion (weighted sum of scores,
                                    a formula query), or weighted RRF
``image``      a radiograph         ``image`` <- image embedding
``text+image`` both                 ``joint`` <- joint embedding of the pair
``like``       an indexed case      ``joint`` <- the example's stored joint vector
=============  ===================  ==========================================================

The weights of a fused query (:class:`FusionWeights`) are chosen on the validation split only
(``benchmarks/bench_retrieval.py --write-fusion``, written to ``fusion.json`` beside the
checkpoint whose vectors the collection holds) and default to :data:`DEFAULT_WEIGHTS`; a component
with weight 0 is left out. Every query is filtered inside the engine (see docs/search.md); nothing
is re-ranked in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from cxrsearch.data.labels import negated_labels
from cxrsearch.errors import ConfigError, ModelError, QueryError
from cxrsearch.store.base import FUSIONS, RRF_K, Filter, Hit, Point, SparseVector, Store, StoredVector
from cxrsearch.store.schema import Bm25Spec
from cxrsearch.text.bm25 import embed_query
from cxrsearch.text.report import report_text

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from cxrsearch.image.decoded import DecodedImage
    from cxrsearch.model.checkpoint import CheckpointInfo
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
    nearest-neighbour query, several -> fused prefetches) and its name in evaluation reports."""

    name: str
    evaluate_name: str
    inputs: tuple[str, ...]
    components: tuple[Component, ...]

    @property
    def queries(self) -> tuple[str, ...]:
        """The query vectors this mode needs, in component order, each once."""
        return tuple(dict.fromkeys(c.query for c in self.components))


MODES: dict[str, Mode] = {
    "text": Mode(
        "text",
        "text->case",
        ("text",),
        (
            Component("text", "text", "text"),
            Component("bm25", "bm25", "bm25"),
            Component("labels", "label_probs", "label_probs"),
            Component("image", "image", "text"),
        ),
    ),
    "image": Mode("image", "image->case", ("image",), (Component("image", "image", "image"),)),
    "text+image": Mode("text+image", "image+text->case", ("image", "text"), (Component("joint", "joint", "joint"),)),
    "like": Mode("like", "case->case", (), (Component("joint", "joint", "example"),)),
}
"""The table above. ``like`` queries with a stored vector, so it needs no model."""

DENSE_COMPONENTS = frozenset({"text", "image"})
"""The text mode's components searched with the query's text embedding (the others: BM25 terms and
the label vector)."""

BY_EVALUATE_NAME: dict[str, Mode] = {mode.evaluate_name: mode for mode in MODES.values()}


def mode(name: str) -> Mode:
    """The mode called ``name`` (search name such as ``"text"`` or evaluation name ``"text->case"``)."""
    found = MODES.get(name) or BY_EVALUATE_NAME.get(name)
    if found is None:
        raise ConfigError(f"unknown search mode {name!r} (modes: {', '.join(MODES)})")
    return found


FUSION_FILE = "fusion.json"


@dataclass(frozen=True)
class FusionWeights:
    """How the fused components of a query combine: their ``weights`` by name, the ``fusion``
    (:data:`~cxrsearch.store.base.FUSIONS`: weighted RRF, or ``"linear"``, the weighted sum of the
    components' scores, each normalised per query by :func:`fusion_coefficients`); ``source`` says
    where they came from."""

    weights: Mapping[str, float]
    source: str = "equal (1 each)"
    fusion: str = "rrf"

    def of(self, component: str) -> float:
        return float(self.weights.get(component, 1.0))


EQUAL_WEIGHTS = FusionWeights({})
"""Every component weighs 1."""

DEFAULT_WEIGHTS = FusionWeights(
    {"text": 0.0, "image": 0.0, "bm25": 0.1, "labels": 1.0},
    "default: the fusion tuned on val for cpu-minilm-fs (docs/evaluation.md); tune your checkpoint's "
    "with benchmarks/bench_retrieval.py --write-fusion",
    "linear",
)
"""The fusion of a checkpoint without ``fusion.json``: the one tuned on val (val reports and short-v1
dev) for the packaged ``cpu-minilm-fs`` configuration, the best of both grids there (val P@10 0.878,
dev 0.877; the best RRF weighting scored 0.877 and 0.872). It is linear: the label vector's score
plus a tenth of the BM25 score, each scaled to the query (:func:`fusion_coefficients`). Among cases
the model is about equally sure hold the asked labels, BM25 decides, so the words the label vector
cannot see (left, right, lower lobe) order them: on the laterality dev queries 0.581 of the first
ten hits hold the finding on the asked side, against 0.287 under the RRF weighting. The dense
``text`` list got weight 0 on val (the label vector is the model's reading of the same text), and
``image``, absent from that text-only checkpoint, weighs as ``text``: a checkpoint trained with
radiographs should be tuned with ``--write-fusion``. Under RRF with ``k = 1`` equal weights are a
poor default (val 0.769 against 0.877)."""


def fusion_weights(encoder: Encoder | None) -> FusionWeights:
    """The fusion weights for a collection indexed with ``encoder``'s checkpoint: ``fusion.json``
    beside it when tuned (on val, for these weights and this RRF ``k``), else :data:`DEFAULT_WEIGHTS`;
    ``image`` is 0 for a checkpoint trained without radiographs (its image tower never learned: its
    vectors would only add noise to text queries)."""
    import json

    weights: dict[str, float] = dict(DEFAULT_WEIGHTS.weights)
    source, fusion = DEFAULT_WEIGHTS.source, DEFAULT_WEIGHTS.fusion
    info = encoder.checkpoint.info if encoder is not None and encoder.checkpoint is not None else None
    if info is not None and (info.path / FUSION_FILE).is_file():
        path = info.path / FUSION_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("fingerprint") != info.fingerprint:
                raise ConfigError("it was tuned for other weights (fingerprint differs); tune again", path=path)
            fusion = str(data.get("fusion", "rrf"))  # files written before the key existed tuned RRF
            if fusion not in FUSIONS:
                raise ConfigError(f"unknown fusion {fusion!r} (fusions: {', '.join(FUSIONS)})", path=path)
            tuned_k = data.get("rrf_k", 60)  # files written before the key existed were tuned at k = 60
            if fusion == "rrf" and tuned_k != RRF_K:
                raise ConfigError(
                    f"its weights were tuned for RRF k = {tuned_k}, and cxrsearch fuses with k = {RRF_K}, where "
                    "they mean something else: tune again (benchmarks/bench_retrieval.py --write-fusion) or "
                    "delete the file to use the default weights",
                    path=path,
                )
            weights = {str(k): float(v) for k, v in data["weights"].items()}
            source = str(data.get("source", "fusion.json"))
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            raise ConfigError(f"cannot read the fusion weights: {exc}", path=path) from None
    if info is not None and not trained_with_images(info):
        weights["image"] = 0.0
    return FusionWeights(weights, source, fusion)


def trained_with_images(info: CheckpointInfo) -> bool:
    """Whether the image side learned (:attr:`CheckpointInfo.trained_modalities`): radiographs in
    training and an image tower that was trained or pretrained (not a random one kept frozen)."""
    return "image" in (info.trained_modalities or ())


QueryVectors = Mapping[str, "np.ndarray | SparseVector | StoredVector | None"]
"""One query's vectors by query key (``"text"``, ``"image"``, ``"joint"``, ``"label_probs"``,
``"bm25"``, ``"example"``: the :class:`StoredVector` of a ``like`` query's example); ``bm25`` is ``None``
when no query word is left after stopwords."""


def bm25_params(store: Store, collection: str, mode_name: str) -> Bm25Spec | None:
    """The collection's BM25 parameters when ``mode_name`` has a ``bm25`` component, else ``None``
    (no store round trip for queries that do not need them)."""
    return store.collection_info(collection).schema.bm25 if "bm25" in mode(mode_name).queries else None


def encode_queries(
    encoder: Encoder,
    mode_name: str,
    texts: Sequence[str] | None = None,
    images: Sequence[DecodedImage] | None = None,
    batch_size: int = 32,
    bm25: Bm25Spec | None = None,
) -> list[dict[str, np.ndarray | SparseVector | None]]:
    """The query vectors of ``mode_name`` for each (text, image) query, encoded in batches.

    ``texts`` are query texts as the model reads them (cleaned, see :func:`query_text`); one query
    per element, and both sequences of the same length when the mode reads both. ``bm25``: the
    collection's BM25 parameters, needed by modes with a ``bm25`` component.
    """
    import numpy as np

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
    encoded = encoder.encode(
        images=list(images) if images is not None else None,
        texts=list(texts) if texts is not None else None,
        batch_size=batch_size,
    )
    label_probs = encoded.probs.astype(np.float32)
    if "label_probs" in m.queries and texts is not None:
        columns = {label: j for j, label in enumerate(encoder.labels)}
        for row, text in enumerate(texts):
            for label in negated_labels(text):  # "no pleural effusion" does not ask for an effusion
                if label in columns:
                    label_probs[row, columns[label]] = 0.0
    by_key = {
        "text": encoded.text,
        "image": encoded.image,
        "joint": encoded.joint,
        "label_probs": label_probs,
    }
    out: list[dict[str, np.ndarray | SparseVector | None]] = [{} for _ in range(count)]
    for key in m.queries:
        if key == "bm25":
            if bm25 is None:
                raise QueryError(
                    "this collection has no BM25 vectors (made by an older cxrsearch): drop it and "
                    "index again (see docs/search.md, collections made before hybrid search)"
                )
            for text, vectors in zip(texts or (), out):
                vectors["bm25"] = embed_query(text, bm25)
            continue
        matrix = by_key.get(key)
        if matrix is None:  # pragma: no cover - the Encoder returns the modalities it was given
            raise ModelError(f"the model returned no {key} embedding")
        for row, vectors in enumerate(out):
            vectors[key] = matrix[row]
    return out


def active_components(mode_name: str, vectors: QueryVectors, weights: FusionWeights = EQUAL_WEIGHTS) -> list[Component]:
    """The components a query runs: weight > 0 and a query vector (a query of stopwords only has
    no BM25 vector)."""
    m = mode(mode_name)
    missing = [key for key in m.queries if key not in vectors]
    if missing:
        raise QueryError(f"a {m.name} query needs the query vector(s) {', '.join(missing)}")
    if len(m.components) == 1:
        return [c for c in m.components if vectors[c.query] is not None]
    return [c for c in m.components if weights.of(c.name) > 0 and _ranks_something(vectors[c.query])]


def _ranks_something(vector: object) -> bool:
    """Whether a fused component's query vector can order a list: present, and not all zeros (a label
    vector whose every label the query negates scores every point 0)."""
    if vector is None:
        return False
    if isinstance(vector, (SparseVector, StoredVector)):
        return True
    import numpy as np

    return bool(np.any(np.asarray(vector) != 0))


def fusion_coefficients(components: Sequence[Component], vectors: QueryVectors, weights: FusionWeights) -> list[float]:
    """What each component's list is multiplied by in the fused query. RRF: its weight. Linear: its
    weight over the size its scores have for this query, so that a weight means the same for a
    two-word and a whole-report query: ``labels`` (the dot product with the query's label
    probabilities) over the sum of those probabilities, ``bm25`` (one IDF-weighted term score per
    query word) over the sum of the query's term weights; dense cosines as they are."""
    out = []
    for c in components:
        weight = weights.of(c.name)
        if weights.fusion == "linear":
            vector = vectors[c.query]
            if isinstance(vector, SparseVector):
                weight /= max(float(sum(vector.values)), 1e-12)
            elif c.vector == "label_probs" and vector is not None and not isinstance(vector, StoredVector):
                import numpy as np

                weight /= max(float(np.sum(np.asarray(vector, dtype=np.float64))), 1e-12)
        out.append(weight)
    return out


def _present(vectors: QueryVectors, key: str) -> np.ndarray | SparseVector | StoredVector:
    """``vectors[key]`` for an active component's query key: never ``None`` (see :func:`active_components`)."""
    return cast("np.ndarray | SparseVector | StoredVector", vectors[key])


def run_query(
    store: Store,
    collection: str,
    mode_name: str,
    vectors: QueryVectors,
    flt: Filter | None,
    limit: int,
    weights: FusionWeights = EQUAL_WEIGHTS,
) -> list[Hit]:
    """The store query of ``mode_name`` (see the table): one component -> nearest neighbours of
    its named vector; several -> one prefetch each, fused inside the engine (``weights.fusion``)."""
    components = active_components(mode_name, vectors, weights)
    if not components:
        raise QueryError("nothing to search with: the query has no words left and every other component is off")
    if len(components) == 1:
        (component,) = components
        return store.search(collection, component.vector, _present(vectors, component.query), flt, limit)
    return store.search_fused(
        collection,
        [(c.vector, _present(vectors, c.query)) for c in components],
        flt,
        limit,
        weights=fusion_coefficients(components, vectors, weights),
        fusion=weights.fusion,
    )


def component_ranks(
    store: Store,
    collection: str,
    mode_name: str,
    vectors: QueryVectors,
    flt: Filter | None,
    hits: Sequence[Hit | Point],
    weights: FusionWeights = EQUAL_WEIGHTS,
    depth: int = 100,
) -> list[dict[str, dict[str, float | int | None]]]:
    """For each hit, each component's own rank (1-based, ``None`` below ``depth``) and score: the
    inputs of the fused score, from the same filtered queries the fusion ran as prefetches."""
    out: list[dict[str, dict[str, float | int | None]]] = [{} for _ in hits]
    components = active_components(mode_name, vectors, weights)
    coefficients = fusion_coefficients(components, vectors, weights)
    for component, coefficient in zip(components, coefficients):
        ranked = store.search(collection, component.vector, _present(vectors, component.query), flt, depth)
        where = {hit.id: (rank, hit.score) for rank, hit in enumerate(ranked, start=1)}
        weight = weights.of(component.name)
        for hit, record in zip(hits, out):
            rank, score = where.get(hit.id, (None, None))
            record[component.name] = {"rank": rank, "score": score, "weight": weight}
            if weights.fusion == "linear":  # the fused score is the sum of coefficient * score
                record[component.name]["coefficient"] = coefficient
    return out


def query_text(text: str | None) -> str:
    """A query text as the model reads reports (the same cleaning, see :mod:`cxrsearch.text.report`)."""

    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError:  # bytes the terminal could not decode arrive as lone surrogates
        raise QueryError("--text holds bytes that are not UTF-8 text (check the terminal's encoding)") from None
    cleaned = report_text(text, None)
    if not cleaned:
        raise QueryError(f"--text {text!r} has no words left after cleaning")
    return cleaned
