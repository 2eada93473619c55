"""Store fixtures: one ``store`` per backend and synthetic cases with a numpy brute-force oracle.

``store`` runs every test on the embedded qdrant-edge store (tmp dir), on qdrant-client's in-memory
API and, when ``CXRSEARCH_TEST_QDRANT_URL`` is set and answers, on a real server (marked ``server``).
The same assertions run on each: that is the congruence check between backends.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cxrsearch.errors import StoreError
from cxrsearch.store import Filter, Point, load_schema, point_id
from cxrsearch.store.client import ClientStore
from cxrsearch.store.edge import EdgeStore

DIM = 16
LABELS = ("normal", "cardiomegaly", "effusion", "opacity", "nodule")
FREQS = (0.4, 0.15, 0.1, 0.2, 0.05)
VIEWS = ("PA", "AP", "LATERAL")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Cases:
    """Synthetic cases. Vectors ``[N, DIM]`` (rows of points without a radiograph are NaN in ``image``)."""

    keys: list[str]
    study: np.ndarray  # [N] study id strings
    vectors: dict[str, np.ndarray]
    has_image: np.ndarray  # [N] bool
    labels: np.ndarray  # [N, L] bool, predicted
    labels_true: np.ndarray  # [N, L] bool, MeSH
    view: np.ndarray  # [N] str ("" when unknown)
    split: np.ndarray  # [N] str

    def points(self, collection: str) -> list[Point]:
        out = []
        for i, key in enumerate(self.keys):
            vectors = {n: v[i] for n, v in self.vectors.items() if n != "image" or self.has_image[i]}
            payload = {
                "study_id": str(self.study[i]),
                "image_id": key if self.has_image[i] else None,
                "labels": [lab for lab, on in zip(LABELS, self.labels[i]) if on],
                "labels_true": [lab for lab, on in zip(LABELS, self.labels_true[i]) if on],
                "split": str(self.split[i]),
                "impression": f"case {i}",
                "probs": {lab: float(p) for lab, p in zip(LABELS, self.labels[i] * 0.9)},
            }
            if self.view[i]:
                payload["view"] = str(self.view[i])
            out.append(Point(point_id(collection, key), vectors, payload))
        return out

    def ids(self, collection: str) -> np.ndarray:
        return np.array([point_id(collection, k) for k in self.keys])

    def mask(self, flt: Filter | None) -> np.ndarray:
        """Brute-force filter, written from the spec (not from Filter.clauses)."""
        n = len(self.keys)
        ok = np.ones(n, dtype=bool)
        if flt is None:
            return ok
        table = self.labels_true if flt.truth else self.labels
        col = {lab: table[:, j] for j, lab in enumerate(LABELS)}
        for lab in flt.all_labels:
            ok &= col[lab]
        if flt.any_labels:
            ok &= np.any([col[lab] for lab in flt.any_labels], axis=0)
        for lab in flt.not_labels:
            ok &= ~col[lab]
        if flt.view is not None:
            ok &= self.view == flt.view
        if flt.split is not None:
            ok &= self.split == flt.split
        if flt.study_ids:
            ok &= np.isin(self.study, flt.study_ids)
        if flt.exclude_study_ids:
            ok &= ~np.isin(self.study, flt.exclude_study_ids)
        return ok

    def exact_scores(
        self, collection: str, vector_name: str, query: np.ndarray, flt: Filter | None
    ) -> dict[str, float]:
        """Point id -> exact cosine score (float64) of every point that has the vector and passes: the
        oracle a store's search is held to (see ``tests/rankings.py``; float32 stores round differently
        per CPU, so the order of near-ties is not part of it)."""
        mat = self.vectors[vector_name].astype(np.float64)
        ok = self.mask(flt) & (self.has_image if vector_name == "image" else True)
        unit = mat / np.linalg.norm(mat, axis=1, keepdims=True)
        query = np.asarray(query, dtype=np.float64)
        scores = unit @ (query / np.linalg.norm(query))
        return {pid: float(s) for pid, s, keep in zip(self.ids(collection), scores, ok) if keep}


def make_cases(n: int = 240, seed: int = 7) -> Cases:
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(4, DIM))
    vectors = {
        name: (rng.normal(size=(n, 4)) @ basis + 0.5 * rng.normal(size=(n, DIM))).astype(np.float32)
        for name in ("image", "text", "joint")
    }
    study = np.array([f"CXR{i // 2 + 1}" for i in range(n)])  # two points per study
    has_image = rng.random(n) > 0.2
    vectors["image"][~has_image] = np.nan
    return Cases(
        keys=[f"CXR{i // 2 + 1}_IM-{i}" for i in range(n)],
        study=study,
        vectors=vectors,
        has_image=has_image,
        labels=rng.random((n, len(LABELS))) < np.array(FREQS),
        labels_true=rng.random((n, len(LABELS))) < np.array(FREQS),
        view=rng.choice(np.array(VIEWS + ("",)), size=n),
        split=rng.choice(np.array(SPLITS), size=n),
    )


@pytest.fixture(scope="session")
def cases() -> Cases:
    return make_cases()


def _server_store() -> ClientStore:
    url = os.environ.get("CXRSEARCH_TEST_QDRANT_URL", "")
    if not url:
        pytest.skip("no Qdrant server: set CXRSEARCH_TEST_QDRANT_URL (and CXRSEARCH_TEST_QDRANT_API_KEY) to run")
    try:
        return ClientStore.connect(url, os.environ.get("CXRSEARCH_TEST_QDRANT_API_KEY") or None)
    except StoreError as exc:
        pytest.skip(f"Qdrant server at {url} does not answer: {exc}")


BACKENDS = ["edge", "memory", pytest.param("server", marks=pytest.mark.server)]


def _open_backend(kind: str, directory: Path):
    if kind == "edge":
        return EdgeStore(directory / "store")
    if kind == "memory":
        return ClientStore.in_memory()
    return _server_store()


def _cleanup(kind: str, backend, names: list[str]) -> None:
    if kind == "server":  # a real server outlives the test: remove what it created
        for name in names:
            if name in backend.list_collections():
                backend.drop_collection(name)
    backend.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """An empty store of each backend; tests may write to it."""
    backend = _open_backend(request.param, tmp_path)
    backend.test_collections = []  # type: ignore[attr-defined]
    yield backend
    _cleanup(request.param, backend, backend.test_collections)  # type: ignore[attr-defined]


@pytest.fixture
def collection(store) -> str:
    """A fresh collection name (unique, so a shared server is never polluted across tests)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    store.test_collections.append(name)
    return name


@pytest.fixture
def filled(store, collection: str, cases: Cases) -> tuple:
    """``(store, collection, cases)`` with every case upserted; tests may modify it."""
    store.create_collection(collection, load_schema("cases"), DIM, 4)
    store.upsert(collection, cases.points(collection), batch=64)
    return store, collection, cases


@pytest.fixture(scope="module", params=BACKENDS)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cases: Cases):
    """Like ``filled`` but built once per module and backend: for tests that only read."""
    backend = _open_backend(request.param, tmp_path_factory.mktemp("shared"))
    name = f"t-{uuid.uuid4().hex[:10]}"
    backend.create_collection(name, load_schema("cases"), DIM, 4)
    backend.upsert(name, cases.points(name), batch=64)
    yield backend, name, cases
    _cleanup(request.param, backend, [name])
