"""Collection schemas as data: ``collections/<name>.json`` -> :class:`CollectionSchema`.

A schema says which named vectors a collection has (their size is *not* in the file: it comes from
the model checkpoint when the collection is created: its embedding size, or for ``"size": "labels"``
its number of labels), which sparse vectors (``bm25``, with the IDF modifier) and with which BM25
parameters (``avg_len`` ``null`` = the mean length of the corpus indexed first, resolved when the
collection is created and kept in it), how they are indexed (HNSW graph parameters, optional int8
scalar quantisation) and which payload fields get an index. Both backends build their
collection from the same schema, so the embedded store and a server hold the same thing.

The shipped ``cases`` schema and why it has no HNSW graph are described in ``docs/server.md`` and
measured by ``benchmarks/bench_store.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container
from dataclasses import dataclass, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, NamedTuple

from cxrsearch.defaults import DEFAULT_SCHEMA
from cxrsearch.errors import StoreError

_SCHEMA_PACKAGE = "cxrsearch"
_SCHEMA_DIR = "collections"
"""The shipped schemas are package data, ``cxrsearch/collections/*.json`` (in a checkout a symlink
to the repository's ``collections/``), read through importlib.resources like the model configs."""


DISTANCES = ("cosine", "dot", "euclid")
VECTOR_SIZES = ("embedding", "labels")
SPARSE_MODIFIERS = ("idf", None)
PAYLOAD_INDEX_TYPES = ("keyword", "float", "integer", "bool")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class HnswSpec:
    """HNSW graph parameters. ``m == 0`` builds no graph (quantised/plain scan); ``ef`` is search-time."""

    m: int
    ef_construct: int
    payload_m: int
    full_scan_threshold_kb: int
    ef: int


@dataclass(frozen=True)
class QuantizationSpec:
    """Scalar quantisation (``type`` is ``"int8"``) and how searches use it (rescore, oversampling)."""

    type: str
    quantile: float
    always_ram: bool
    rescore: bool
    oversampling: float


@dataclass(frozen=True)
class Bm25Spec:
    """BM25 parameters of the sparse ``bm25`` vector (see :mod:`cxrsearch.text.bm25`); ``avg_len``
    ``None`` until the collection is created from a corpus."""

    k: float
    b: float
    avg_len: float | None


@dataclass(frozen=True)
class CollectionSchema:
    """A collection layout. ``vectors`` maps vector name -> distance; ``vector_size_of`` maps each
    dense vector to where its size comes from (``"embedding"``: the model's joint space;
    ``"labels"``: one dimension per label of the checkpoint). ``sparse_vectors`` maps sparse vector
    name -> modifier (``"idf"`` or ``None``); ``bm25`` holds the parameters of BM25 vectors.

    ``payload_indexes`` maps payload field -> index type (one of :data:`PAYLOAD_INDEX_TYPES`).
    """

    name: str
    description: str
    vectors: dict[str, str]
    hnsw: HnswSpec
    quantization: QuantizationSpec | None
    on_disk_vectors: bool
    payload_indexes: dict[str, str]
    rationale: str = ""
    shard_number: int | None = None
    replication_factor: int | None = None
    """Server only (Qdrant distributed mode); ``None`` keeps the server default. The embedded store
    is one shard by construction."""
    vector_size_of: dict[str, str] | None = None
    unquantized: tuple[str, ...] = ()
    """Dense vectors kept out of :attr:`quantization` (``"quantized": false``) and in RAM: the label
    vector, whose 23 close-together probabilities int8 cannot tell apart (exact search over 23
    floats costs little, and 100k points take 9 MB)."""
    sparse_vectors: dict[str, str | None] | None = None
    bm25: Bm25Spec | None = None

    @property
    def vector_names(self) -> tuple[str, ...]:
        return tuple(self.vectors)

    @property
    def sparse_names(self) -> tuple[str, ...]:
        return tuple(self.sparse_vectors or {})

    def vector_sizes(self, embedding: int, labels: int | None = None) -> dict[str, int]:
        """Size of each dense vector for a model with ``embedding``-d embeddings and ``labels`` labels."""
        sizes = {}
        for name in self.vectors:
            if (self.vector_size_of or {}).get(name, "embedding") == "labels":
                if labels is None:
                    raise StoreError(
                        f"schema {self.name!r}: vector {name!r} has one dimension per label, "
                        "but no label count was given"
                    )
                sizes[name] = labels
            else:
                sizes[name] = embedding
        return sizes

    def model_sizes(self, sizes: dict[str, int]) -> tuple[int, int | None]:
        """The (embedding size, label count) that :meth:`vector_sizes` turned into ``sizes``."""
        by_source: dict[str, set[int]] = {}
        for name, size in sizes.items():
            by_source.setdefault((self.vector_size_of or {}).get(name, "embedding"), set()).add(size)
        if any(len(found) != 1 for found in by_source.values()) or "embedding" not in by_source:
            raise StoreError(f"schema {self.name!r}: inconsistent vector sizes {sizes}")
        labels = by_source.get("labels")
        return by_source["embedding"].pop(), (labels.pop() if labels else None)

    def with_bm25_avg_len(self, avg_len: float) -> CollectionSchema:
        """This schema with BM25's ``avg_len`` fixed (kept when already set)."""
        if self.bm25 is None or self.bm25.avg_len is not None:
            return self
        return replace(self, bm25=Bm25Spec(self.bm25.k, self.bm25.b, float(avg_len)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what the file holds, and what a collection stores about itself)."""
        quant = None
        if self.quantization is not None:
            quant = {k: getattr(self.quantization, k) for k in QuantizationSpec.__dataclass_fields__}
        return {
            "name": self.name,
            "description": self.description,
            "vectors": {
                name: {
                    "distance": dist,
                    **({"size": (self.vector_size_of or {})[name]} if name in (self.vector_size_of or {}) else {}),
                    **({"quantized": False} if name in self.unquantized else {}),
                }
                for name, dist in self.vectors.items()
            },
            **(
                {"sparse_vectors": {name: {"modifier": mod} for name, mod in self.sparse_vectors.items()}}
                if self.sparse_vectors
                else {}
            ),
            **({"bm25": {"k": self.bm25.k, "b": self.bm25.b, "avg_len": self.bm25.avg_len}} if self.bm25 else {}),
            "hnsw": {k: getattr(self.hnsw, k) for k in HnswSpec.__dataclass_fields__},
            "quantization": quant,
            "on_disk_vectors": self.on_disk_vectors,
            "payload_indexes": dict(self.payload_indexes),
            "rationale": self.rationale,
            "shard_number": self.shard_number,
            "replication_factor": self.replication_factor,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "<schema>") -> CollectionSchema:
        """Validate ``data`` strictly (unknown keys are errors: they are usually typos). One step per
        section, in this order: top-level keys, name, vectors, sparse vectors, BM25, HNSW,
        quantisation, payload indexes, sharding, ``on_disk_vectors``."""
        _check_top_level(data, source)
        name = _parse_name(data["name"], source)
        vectors = _parse_vectors(data["vectors"], source)
        sparse = _parse_sparse_vectors(data.get("sparse_vectors") or {}, vectors.distances, source)
        bm25 = _parse_bm25(data.get("bm25"), source)
        _require(
            bm25 is not None or not sparse,
            source,
            "a schema with sparse_vectors needs a 'bm25' object (k, b, avg_len)",
        )
        hnsw = _parse_hnsw(data["hnsw"], source)
        quantization = _parse_quantization(data.get("quantization"), source)
        indexes = _parse_payload_indexes(data["payload_indexes"], source)
        _check_sharding(data, source)
        on_disk = data.get("on_disk_vectors", False)
        _require(isinstance(on_disk, bool), source, "'on_disk_vectors' must be true or false")
        return cls(
            name=name,
            description=str(data.get("description", "")),
            vectors=vectors.distances,
            hnsw=hnsw,
            quantization=quantization,
            on_disk_vectors=on_disk,
            payload_indexes=indexes,
            rationale=str(data.get("rationale", "")),
            shard_number=data.get("shard_number"),
            replication_factor=data.get("replication_factor"),
            vector_size_of=vectors.size_of or None,
            unquantized=vectors.unquantized,
            sparse_vectors=sparse or None,
            bm25=bm25,
        )


# -- validation steps of CollectionSchema.from_dict, one per section (StoreError naming ``source``) ---


class _Vectors(NamedTuple):
    """The parsed ``vectors`` section: name -> distance, name -> size source, unquantised names."""

    distances: dict[str, str]
    size_of: dict[str, str]
    unquantized: tuple[str, ...]


def _check_top_level(data: Any, source: str | Path) -> None:
    _require(isinstance(data, dict), source, "a schema must be a JSON object")
    _keys(
        data,
        source,
        "schema",
        required={"name", "vectors", "hnsw", "payload_indexes"},
        optional={
            "description",
            "quantization",
            "on_disk_vectors",
            "rationale",
            "shard_number",
            "replication_factor",
            "sparse_vectors",
            "bm25",
        },
    )


def _parse_name(name: Any, source: str | Path) -> str:
    _require(
        isinstance(name, str) and bool(_NAME.match(name)),
        source,
        f"'name' must be 1-64 letters, digits, '_', '-' or '.', got {name!r}",
    )
    return name


def _parse_vectors(vectors: Any, source: str | Path) -> _Vectors:
    _require(isinstance(vectors, dict) and len(vectors) > 0, source, "'vectors' must be a non-empty object")
    distances: dict[str, str] = {}
    size_of: dict[str, str] = {}
    unquantized: list[str] = []
    for vname, spec in vectors.items():
        _require(bool(_NAME.match(vname)), source, f"bad vector name {vname!r}")
        _require(isinstance(spec, dict), source, f"vectors.{vname} must be an object")
        _keys(spec, source, f"vectors.{vname}", required={"distance"}, optional={"size", "quantized"})
        _require(
            spec["distance"] in DISTANCES,
            source,
            f"vectors.{vname}.distance must be one of {', '.join(DISTANCES)}, got {spec['distance']!r}",
        )
        distances[vname] = spec["distance"]
        _require(
            isinstance(spec.get("quantized", True), bool),
            source,
            f"vectors.{vname}.quantized must be true or false",
        )
        if not spec.get("quantized", True):
            unquantized.append(vname)
        if "size" in spec:
            _require(
                spec["size"] in VECTOR_SIZES,
                source,
                f"vectors.{vname}.size must be one of {', '.join(VECTOR_SIZES)}, got {spec['size']!r}",
            )
            size_of[vname] = spec["size"]
    return _Vectors(distances, size_of, tuple(unquantized))


def _parse_sparse_vectors(sparse: Any, dense_names: Container[str], source: str | Path) -> dict[str, str | None]:
    """``sparse_vectors`` (name -> modifier); a sparse vector may not reuse a dense vector's name."""
    _require(isinstance(sparse, dict), source, "'sparse_vectors' must be an object")
    parsed: dict[str, str | None] = {}
    for vname, spec in sparse.items():
        _require(bool(_NAME.match(vname)) and vname not in dense_names, source, f"bad sparse vector name {vname!r}")
        _require(isinstance(spec, dict), source, f"sparse_vectors.{vname} must be an object")
        _keys(spec, source, f"sparse_vectors.{vname}", required={"modifier"}, optional=set())
        _require(
            spec["modifier"] in SPARSE_MODIFIERS,
            source,
            f'sparse_vectors.{vname}.modifier must be "idf" or null, got {spec["modifier"]!r}',
        )
        parsed[vname] = spec["modifier"]
    return parsed


def _parse_bm25(bm25: Any, source: str | Path) -> Bm25Spec | None:
    if bm25 is None:
        return None
    _require(isinstance(bm25, dict), source, "'bm25' must be an object or null")
    _keys(bm25, source, "bm25", required={"k", "b", "avg_len"}, optional=set())
    _require(
        _is_number(bm25["k"]) and bm25["k"] >= 0 and _is_number(bm25["b"]) and 0 <= bm25["b"] <= 1,
        source,
        "bm25.k must be >= 0 and bm25.b in [0, 1]",
    )
    _require(
        bm25["avg_len"] is None or (_is_number(bm25["avg_len"]) and bm25["avg_len"] > 0),
        source,
        "bm25.avg_len must be null (from the corpus) or a number > 0",
    )
    return Bm25Spec(float(bm25["k"]), float(bm25["b"]), None if bm25["avg_len"] is None else float(bm25["avg_len"]))


def _parse_hnsw(hnsw: Any, source: str | Path) -> HnswSpec:
    _require(isinstance(hnsw, dict), source, "'hnsw' must be an object")
    _keys(hnsw, source, "hnsw", required=set(HnswSpec.__dataclass_fields__), optional=set())
    for key in HnswSpec.__dataclass_fields__:
        _require(_is_int(hnsw[key]) and hnsw[key] >= 0, source, f"hnsw.{key} must be an integer >= 0")
    _require(hnsw["ef"] >= 1 and hnsw["ef_construct"] >= 4, source, "hnsw.ef must be >= 1 and ef_construct >= 4")
    return HnswSpec(**{k: int(hnsw[k]) for k in HnswSpec.__dataclass_fields__})


def _parse_quantization(quant: Any, source: str | Path) -> QuantizationSpec | None:
    if quant is None:
        return None
    _require(isinstance(quant, dict), source, "'quantization' must be an object or null")
    _keys(quant, source, "quantization", required=set(QuantizationSpec.__dataclass_fields__), optional=set())
    _require(quant["type"] == "int8", source, f"quantization.type must be 'int8', got {quant['type']!r}")
    _require(
        isinstance(quant["quantile"], (int, float)) and 0.5 <= quant["quantile"] <= 1.0,
        source,
        "quantization.quantile must be in [0.5, 1]",
    )
    _require(
        isinstance(quant["oversampling"], (int, float)) and quant["oversampling"] >= 1.0,
        source,
        "quantization.oversampling must be >= 1",
    )
    _require(
        isinstance(quant["always_ram"], bool) and isinstance(quant["rescore"], bool),
        source,
        "quantization.always_ram and quantization.rescore must be true or false",
    )
    return QuantizationSpec(
        type="int8",
        quantile=float(quant["quantile"]),
        always_ram=quant["always_ram"],
        rescore=quant["rescore"],
        oversampling=float(quant["oversampling"]),
    )


def _parse_payload_indexes(indexes: Any, source: str | Path) -> dict[str, str]:
    _require(isinstance(indexes, dict), source, "'payload_indexes' must be an object")
    for field, kind in indexes.items():
        _require(isinstance(field, str) and field != "", source, "payload index field names must be non-empty")
        _require(
            kind in PAYLOAD_INDEX_TYPES,
            source,
            f"payload_indexes.{field} must be one of {', '.join(PAYLOAD_INDEX_TYPES)}, got {kind!r}",
        )
    return dict(indexes)


def _check_sharding(data: dict[str, Any], source: str | Path) -> None:
    """``shard_number`` and ``replication_factor``: ``null`` (server default) or >= 1."""
    for key in ("shard_number", "replication_factor"):
        value = data.get(key)
        _require(value is None or (_is_int(value) and value >= 1), source, f"'{key}' must be null or an integer >= 1")


def _schema_dir() -> Traversable:  # an importlib.resources Traversable: works from a wheel or a checkout
    return resources.files(_SCHEMA_PACKAGE).joinpath(_SCHEMA_DIR)


def list_schemas() -> list[str]:
    """Names of the shipped schemas (``collections/*.json``), sorted."""
    directory = _schema_dir()
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(".json")] for p in directory.iterdir() if p.name.endswith(".json"))


def load_schema(name: str = DEFAULT_SCHEMA) -> CollectionSchema:
    """Load ``collections/<name>.json``, or a schema file when ``name`` is a path ending in ``.json``."""
    path: Path | Traversable = Path(name) if name.endswith(".json") else _schema_dir().joinpath(f"{name}.json")
    where = str(path)
    if not path.is_file():
        raise StoreError(f"no such collection schema (available: {', '.join(list_schemas())})", path=where)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read schema: {exc}", path=where) from exc
    schema = CollectionSchema.from_dict(data, source=where)
    if not name.endswith(".json") and schema.name != name:
        raise StoreError(f"schema file declares name {schema.name!r}, expected {name!r}", path=where)
    return schema


def check_collection_name(name: str) -> None:
    """Collection names become directory names and URL parts: keep them plain."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(f"bad collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.' (not first)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, source: str | Path, message: str) -> None:
    if not ok:
        raise StoreError(message, path=source)


def _keys(obj: dict, source: str | Path, where: str, *, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - set(obj))
    unknown = sorted(set(obj) - required - optional)
    _require(not missing, source, f"{where}: missing key(s) {', '.join(missing)}")
    _require(not unknown, source, f"{where}: unknown key(s) {', '.join(unknown)}")
