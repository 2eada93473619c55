"""Collection schemas as data: ``collections/<name>.json`` -> :class:`CollectionSchema`.

A schema says which named vectors a collection has (their size is *not* in the file: it comes from
the model checkpoint when the collection is created), how they are indexed (HNSW graph parameters,
optional int8 scalar quantisation) and which payload fields get an index. Both backends build their
collection from the same schema, so the embedded store and a server hold the same thing.

The shipped ``cases`` schema and why it has no HNSW graph are described in ``docs/server.md`` and
measured by ``benchmarks/bench_store.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrsearch.errors import StoreError

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "collections"
DEFAULT_SCHEMA = "cases"

DISTANCES = ("cosine", "dot", "euclid")
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
class CollectionSchema:
    """A collection layout. ``vectors`` maps vector name -> distance (all vectors share one size).

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

    @property
    def vector_names(self) -> tuple[str, ...]:
        return tuple(self.vectors)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what the file holds, and what a collection stores about itself)."""
        quant = None
        if self.quantization is not None:
            quant = {k: getattr(self.quantization, k) for k in QuantizationSpec.__dataclass_fields__}
        return {
            "name": self.name,
            "description": self.description,
            "vectors": {name: {"distance": dist} for name, dist in self.vectors.items()},
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
        """Validate ``data`` strictly (unknown keys are errors: they are usually typos)."""
        _require(isinstance(data, dict), source, "a schema must be a JSON object")
        _keys(data, source, "schema", required={"name", "vectors", "hnsw", "payload_indexes"},
              optional={"description", "quantization", "on_disk_vectors", "rationale", "shard_number",
                        "replication_factor"})
        name = data["name"]
        _require(isinstance(name, str) and bool(_NAME.match(name)), source,
                 f"'name' must be 1-64 letters, digits, '_', '-' or '.', got {name!r}")
        vectors = data["vectors"]
        _require(isinstance(vectors, dict) and len(vectors) > 0, source, "'vectors' must be a non-empty object")
        parsed_vectors: dict[str, str] = {}
        for vname, spec in vectors.items():
            _require(bool(_NAME.match(vname)), source, f"bad vector name {vname!r}")
            _require(isinstance(spec, dict), source, f"vectors.{vname} must be an object")
            _keys(spec, source, f"vectors.{vname}", required={"distance"}, optional=set())
            _require(spec["distance"] in DISTANCES, source,
                     f"vectors.{vname}.distance must be one of {', '.join(DISTANCES)}, got {spec['distance']!r}")
            parsed_vectors[vname] = spec["distance"]
        hnsw = data["hnsw"]
        _require(isinstance(hnsw, dict), source, "'hnsw' must be an object")
        _keys(hnsw, source, "hnsw", required=set(HnswSpec.__dataclass_fields__), optional=set())
        for key in HnswSpec.__dataclass_fields__:
            _require(_is_int(hnsw[key]) and hnsw[key] >= 0, source, f"hnsw.{key} must be an integer >= 0")
        _require(hnsw["ef"] >= 1 and hnsw["ef_construct"] >= 4, source, "hnsw.ef must be >= 1 and ef_construct >= 4")
        quant = data.get("quantization")
        parsed_quant = None
        if quant is not None:
            _require(isinstance(quant, dict), source, "'quantization' must be an object or null")
            _keys(quant, source, "quantization", required=set(QuantizationSpec.__dataclass_fields__), optional=set())
            _require(quant["type"] == "int8", source, f"quantization.type must be 'int8', got {quant['type']!r}")
            _require(isinstance(quant["quantile"], (int, float)) and 0.5 <= quant["quantile"] <= 1.0, source,
                     "quantization.quantile must be in [0.5, 1]")
            _require(isinstance(quant["oversampling"], (int, float)) and quant["oversampling"] >= 1.0, source,
                     "quantization.oversampling must be >= 1")
            _require(isinstance(quant["always_ram"], bool) and isinstance(quant["rescore"], bool), source,
                     "quantization.always_ram and quantization.rescore must be true or false")
            parsed_quant = QuantizationSpec(
                type="int8", quantile=float(quant["quantile"]), always_ram=quant["always_ram"],
                rescore=quant["rescore"], oversampling=float(quant["oversampling"]),
            )
        indexes = data["payload_indexes"]
        _require(isinstance(indexes, dict), source, "'payload_indexes' must be an object")
        for field, kind in indexes.items():
            _require(isinstance(field, str) and field != "", source, "payload index field names must be non-empty")
            _require(kind in PAYLOAD_INDEX_TYPES, source,
                     f"payload_indexes.{field} must be one of {', '.join(PAYLOAD_INDEX_TYPES)}, got {kind!r}")
        for key in ("shard_number", "replication_factor"):
            value = data.get(key)
            _require(value is None or (_is_int(value) and value >= 1), source,
                     f"'{key}' must be null or an integer >= 1")
        on_disk = data.get("on_disk_vectors", False)
        _require(isinstance(on_disk, bool), source, "'on_disk_vectors' must be true or false")
        return cls(
            name=name, description=str(data.get("description", "")), vectors=parsed_vectors,
            hnsw=HnswSpec(**{k: int(hnsw[k]) for k in HnswSpec.__dataclass_fields__}),
            quantization=parsed_quant, on_disk_vectors=on_disk, payload_indexes=dict(indexes),
            rationale=str(data.get("rationale", "")), shard_number=data.get("shard_number"),
            replication_factor=data.get("replication_factor"),
        )


def list_schemas() -> list[str]:
    """Names of the shipped schemas (``collections/*.json``), sorted."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))


def load_schema(name: str = DEFAULT_SCHEMA) -> CollectionSchema:
    """Load ``collections/<name>.json``, or a schema file when ``name`` is a path ending in ``.json``."""
    path = Path(name) if name.endswith(".json") else SCHEMA_DIR / f"{name}.json"
    if not path.is_file():
        raise StoreError(f"no such collection schema (available: {', '.join(list_schemas())})", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read schema: {exc}", path=path) from exc
    schema = CollectionSchema.from_dict(data, source=path)
    if not name.endswith(".json") and schema.name != name:
        raise StoreError(f"schema file declares name {schema.name!r}, expected {name!r}", path=path)
    return schema


def check_collection_name(name: str) -> None:
    """Collection names become directory names and URL parts: keep them plain."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(f"bad collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.' (not first)")


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
