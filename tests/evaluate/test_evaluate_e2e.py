"""``cxrsearch evaluate`` end to end: the session's tiny checkpoint, the first 300 real Open-i reports
and real radiographs linked under the Open-i names of a few of those studies (the Open-i image
archives are not on these machines). Results are not meaningful; the shape and the rules are."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.data.openi import Study, load_studies
from cxrsearch.model.checkpoint import read_checkpoint_info
from cxrsearch.store.base import SparseVector

pytestmark = pytest.mark.slow

N_REPORTS = 300
STAND_INS = [
    "png/nih_00000001_000.png",
    "png/tbx11k_h0001_rgb.png",
    "png/nih_00027426_000.png",
    "png/tbx11k_tb0005_rgb.png",
]
TEST_IMAGES = [
    "CXR10_IM-0002-1001",
    "CXR37_IM-1847-0001-0002",
    "CXR80_IM-2333-1001",
    "CXR117_IM-0114-2002",
]  # PA in the table


@pytest.fixture(scope="module")
def subset(reports_tgz: Path, real_data: Path, images_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder: the first 300 reports as XML files, the real metadata table, and ``images/``
    with stand-in radiographs for 4 test-split studies and 6 train-split studies (+ report 1's own)."""
    root = tmp_path_factory.mktemp("eval_subset")
    with tarfile.open(reports_tgz) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith(".xml")), key=lambda m: int(Path(m.name).stem))
        for member in members[:N_REPORTS]:
            (root / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    (root / "nlmcxr_dicom_metadata.csv.gz").symlink_to(real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz")
    studies = load_studies(root)
    train_images = [s.image_ids[0] for s in studies if s.split == "train" and s.image_ids and s.labels][1:7]
    images = root / "images"
    images.mkdir()
    (images / "CXR1_1_IM-0001-3001.png").symlink_to(images_dir / "png" / "CXR1_1_IM-0001-3001.png")
    for i, image_id in enumerate(TEST_IMAGES + train_images):
        (images / f"{image_id}.png").symlink_to(images_dir / STAND_INS[i % len(STAND_INS)])
    return root


@pytest.fixture(scope="module")
def run(subset: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One ``cxrsearch evaluate --json`` run (its cache and outputs kept for the tests of this module)."""
    root = tmp_path_factory.mktemp("eval_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRSEARCH_CACHE", str(root / "cache"))
        mp.setenv("CXRSEARCH_OUTPUT", str(root / "outputs"))
        args = [
            "evaluate",
            "--data",
            str(subset),
            "--model",
            str(tiny_checkpoint),
            "--k",
            "1,5,10",
            "--json",
            "--out",
            str(root / "report" / "eval.md"),
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        yield {"json": json.loads(result.stdout), "root": root, "cache": root / "cache"}


def test_json_has_every_section_and_metric(run: dict, tiny_checkpoint: Path) -> None:
    out = run["json"]
    assert set(out) >= {
        "settings",
        "data",
        "checkpoint",
        "index",
        "classification",
        "retrieval",
        "crossmodal",
        "timings",
        "machine",
        "report",
        "plot",
    }
    assert out["checkpoint"]["fingerprint"] == read_checkpoint_info(tiny_checkpoint).fingerprint
    assert out["data"]["studies"] == N_REPORTS and sum(out["data"]["split_sizes"].values()) == N_REPORTS
    assert out["settings"]["split"] == "test" and out["settings"]["ks"] == [1, 5, 10]
    cls = out["classification"]
    assert set(cls) >= {"macro_auroc", "macro_average_precision", "macro_f1", "scored", "too_few_positives", "labels"}
    assert sorted(cls["scored"] + cls["too_few_positives"]) == sorted(cls["labels"])
    assert all(cls["labels"][name]["positives"] < 5 for name in cls["too_few_positives"])
    thresholds = read_checkpoint_info(tiny_checkpoint).thresholds
    assert [cls["labels"][name]["threshold"] for name in read_checkpoint_info(tiny_checkpoint).labels] == list(
        thresholds
    )
    results = out["retrieval"]["results"]
    keys = {f"{m}@{k}" for m in ("P", "R", "mAP", "nDCG") for k in (1, 5, 10)} | {"MRR"}
    for setting in ("historical", "within"):
        for method in ("model", "untrained", "bm25", "random"):
            for relevance in ("strict", "lenient"):
                cell = results[setting]["text->case"][method][relevance]
                assert set(cell["metrics"]) == keys and cell["queries"] > 0
                assert all(0.0 <= v <= 1.0 for v in cell["metrics"].values())
    strict, lenient = (results["historical"]["text->case"]["bm25"][r]["metrics"] for r in ("strict", "lenient"))
    assert lenient["P@10"] >= strict["P@10"]  # lenient accepts every strict hit, and more


def test_image_modes_run_where_images_exist(run: dict) -> None:
    out = run["json"]
    modes = out["retrieval"]["modes"]["historical"]
    assert modes["image->case"]["queries"] >= 1 and modes["image->case"]["note"] is None
    assert "bm25" not in out["retrieval"]["results"]["historical"]["image->case"]  # BM25 needs text
    assert set(out["retrieval"]["results"]["historical"]["image+text->case"]) == {
        "model",
        "untrained",
        "tfidf-lr",
        "tfidf-lr-dot",
        "bm25",
        "random",
    }
    clip = out["crossmodal"]["model"]
    assert clip["note"] is None and clip["pairs"] == len(TEST_IMAGES)
    assert set(clip["image_to_report"]) == {"R@1", "R@5", "R@10"} and clip["image_to_report"]["R@10"] == 1.0


def test_report_and_plot_are_written(run: dict) -> None:
    out = run["json"]
    report, plot = Path(out["report"]), Path(out["plot"])
    text = report.read_text(encoding="utf-8")
    assert out["checkpoint"]["fingerprint"] in text
    for needle in (
        "## Settings",
        "## Classification",
        "## Retrieval: historical",
        "## Retrieval: within",
        "**strict** relevance",
        "**lenient** relevance",
        "CXR-CLIP",
        f"![P@k against k]({plot.name})",
        "too few",
        "test studies",
    ):
        assert needle in text, needle
    assert plot.parent == report.parent and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(plot) as image:
        assert image.width > 600 and image.height > 300


def test_the_query_study_is_never_its_own_hit(run: dict, subset: Path, tiny_checkpoint: Path) -> None:
    """Within the test split, a query's own study would be its best match; every ranking leaves it out."""
    from cxrsearch.evaluate.retrieval import QueryCase, Searcher, search_rankings
    from cxrsearch.model.encode import Encoder
    from cxrsearch.search import QuerySpec, search
    from cxrsearch.store.edge import EdgeStore

    studies: list[Study] = [s for s in load_studies(subset) if s.split == "test" and s.labels and s.report_text()]
    store = EdgeStore(run["cache"] / "evaluate" / "store")
    try:
        collection = run["json"]["index"]["model"]["collection"]
        searcher = Searcher(store, collection, Encoder(tiny_checkpoint))
        queries = [QueryCase(s.uid, s.labels, s.labels[0], s.report_text(), None) for s in studies[:8]]
        # without the exclusion, the query's own report is a hit: first of the dense text list (ties:
        # identical reports), so within the fused top 40 even when the label vector weighs most
        for query in queries:
            hits = search(QuerySpec(text=query.text, split="test", k=40), store, collection, searcher.encoder)
            assert query.uid in {hit.payload["study_id"] for hit in hits}
        for mode in ("text->case", "case->case"):
            rankings = search_rankings(searcher, mode, queries, "test", depth=10, fetch=40)
            for query, ranking in zip(queries, rankings):
                assert query.uid not in ranking and len(ranking) == len(set(ranking)) == 10
    finally:
        store.close()


class _Recorder:
    """A store that records the queries sent through it (then sends them on)."""

    def __init__(self, store) -> None:
        self._store, self.calls = store, []

    def search(self, collection, vector_name, vector, filter=None, limit=10, with_vectors=False):
        self.calls.append(("search", ((vector_name, vector),), filter, limit))
        return self._store.search(collection, vector_name, vector, filter, limit, with_vectors)

    def search_fused(self, collection, queries, filter=None, limit=10, weights=None, fusion="rrf"):
        self.calls.append(
            ("search_fused", tuple((name, vec) for name, vec in queries), filter, (limit, weights, fusion))
        )
        return self._store.search_fused(collection, queries, filter, limit, weights, fusion)

    def __getattr__(self, name):
        return getattr(self._store, name)


def _same_query(mine, theirs, own_study: str) -> bool:
    """Same store method, named vectors, limit, fusion and fusion weights, the filter of ``search`` plus
    the query's own study left out; query vectors, and the linear fusion's per-query weights made from
    them, equal to float tolerance (a batch may sum in another order than one query at a time:
    CPU-dependent ulps)."""
    (method, vectors, flt, sizes), (method2, vectors2, flt2, sizes2) = mine, theirs
    if method == "search_fused" and method2 == "search_fused":
        (limit, weights, fusion), (limit2, weights2, fusion2) = sizes, sizes2
        same_weights = weights == weights2 or (
            weights is not None and weights2 is not None and np.allclose(weights, weights2, rtol=1e-5, atol=0)
        )
        same_sizes = (limit, fusion) == (limit2, fusion2) and same_weights
    else:
        same_sizes = sizes == sizes2
    return (
        (method, [n for n, _ in vectors]) == (method2, [n for n, _ in vectors2])
        and same_sizes
        and flt == replace(flt2, exclude_study_ids=(own_study,))
        and all(_close(a, b) for (_, a), (_, b) in zip(vectors, vectors2))
    )


def _close(a, b) -> bool:
    if isinstance(a, SparseVector) or isinstance(b, SparseVector):
        return a == b  # BM25 query terms: made from the text alone, no floats involved
    return np.allclose(a, b, atol=1e-5)


def _tie_groups(hits) -> list[frozenset[str]]:
    """Study ids as groups of equal score (1e-6) in rank order: the engine may order exact ties
    (identical reports, identical stand-in radiographs) either way."""
    groups: list[set[str]] = []
    last = None
    for hit in hits:
        if last is not None and abs(hit.score - last) <= 1e-6:
            groups[-1].add(str(hit.payload["study_id"]))
        else:
            groups.append({str(hit.payload["study_id"])})
        last = hit.score
    return [frozenset(ids) for ids in groups]


def test_evaluate_sends_the_store_queries_of_cxrsearch_search(run: dict, subset: Path, tiny_checkpoint: Path) -> None:
    """One query-mode table: evaluate's batched queries are the store queries ``search`` sends (the
    test fails if a mode's vectors, prefetches, limit or filter differ), and with the same query
    vectors a nearest-neighbour mode returns ``search``'s hits. Tie order is never compared: batching
    moves scores by ulps, the engine orders exact ties as its plan goes, and in a fused (RRF) query
    a swapped tie changes ranks, so fused hits are pinned by the identical query instead."""
    from cxrsearch.evaluate.retrieval import QueryCase, Searcher, encode_queries, search_rankings
    from cxrsearch.model.encode import Encoder
    from cxrsearch.search import QuerySpec, search
    from cxrsearch.search.modes import mode as search_mode
    from cxrsearch.store.edge import EdgeStore

    images = subset / "images"
    queries = [
        QueryCase(s.uid, s.labels, s.labels[0], s.report_text(), str(images / f"{i}.png"))
        for s in load_studies(subset)
        for i in s.image_ids
        if i in TEST_IMAGES
    ]
    assert queries
    store = EdgeStore(run["cache"] / "evaluate" / "store")
    try:
        encoder = Encoder(tiny_checkpoint)
        collection = run["json"]["index"]["model"]["collection"]
        for mode in ("text->case", "image->case", "image+text->case"):
            bm25 = store.collection_info(collection).schema.bm25
            for query, vectors in zip(queries, encode_queries(encoder, mode, queries, bm25=bm25)):
                theirs = _Recorder(store)
                spec = QuerySpec(
                    text=query.text if "text" in mode else None,
                    image=Path(query.image) if "image" in mode else None,
                    split="train",
                    k=12,
                )
                hits = search(spec, theirs, collection, encoder)
                ours = _Recorder(store)
                search_rankings(Searcher(ours, collection, encoder), mode, [query], "train", 12, 12, [vectors])
                assert len(theirs.calls) == len(ours.calls) == 1, mode
                assert _same_query(ours.calls[0], theirs.calls[0], query.uid), mode
                components = search_mode(mode).components
                if len(components) == 1:  # search's own vector through evaluate's query: same hits, ties as sets
                    ((_, vector),) = theirs.calls[0][1]
                    mine = store.search(collection, components[0].vector, vector, ours.calls[0][2], 12)
                    assert _tie_groups(mine)[:-1] == _tie_groups(hits)[:-1], mode  # k may cut the last group
    finally:
        store.close()


def test_a_second_run_reuses_the_case_base(
    run: dict, subset: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXRSEARCH_CACHE", str(run["cache"]))
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--data",
            str(subset),
            "--model",
            str(tiny_checkpoint),
            "--json",
            "--k",
            "5",
            "--split",
            "val",
            "--out",
            str(run["root"] / "val.md"),
        ],
    )
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["index"]["model"]["encoded_now"] == 0 and again["index"]["untrained"]["encoded_now"] == 0
    assert again["index"]["model"]["collection"] == run["json"]["index"]["model"]["collection"]
    assert set(again["retrieval"]["results"]["historical"]["text->case"]["model"]["strict"]["metrics"]) == {
        "P@5",
        "R@5",
        "mAP@5",
        "nDCG@5",
        "MRR",
    }
    # val is the tuning split: the run says so, and the short queries use their dev half
    assert any("val is the tuning split" in note for note in again["settings"]["notes"])
    assert again["short_queries"]["half"] == "dev" and run["json"]["short_queries"]["half"] == "test"


def test_v2_methods_subsets_and_short_queries_in_one_run(run: dict) -> None:
    """Every method on the same queries: the hybrid's components alone (fused text mode only), the
    supervised tfidf-lr anchor, the novel / non-normal subsets, and the short-query protocol."""
    out = run["json"]
    text = out["retrieval"]["results"]["historical"]["text->case"]
    assert set(text) == {
        "model",
        "dense",
        "qdrant-bm25",
        "labels",
        "untrained",
        "tfidf-lr",
        "tfidf-lr-dot",
        "bm25",
        "random",
    }
    assert len({cell["strict"]["queries"] for cell in text.values()}) == 1  # the same queries for every method
    assert "dense" not in out["retrieval"]["results"]["historical"]["image->case"]  # one vector: nothing to split
    subsets = out["retrieval"]["subsets"]["historical"]["text->case"]["tfidf-lr"]
    assert set(subsets) == {"novel", "non-normal"}
    assert all(0 < cell["queries"] <= text["tfidf-lr"]["strict"]["queries"] for cell in subsets.values())
    short = out["short_queries"]
    assert short["set"] == "short-v1" and set(short["results"]) == set(text)
    from cxrsearch.evaluate.short_queries import load_short_queries

    assert all(cell["queries"] == len(load_short_queries("test")) for cell in short["results"].values())
    assert any("labels that define relevance" in note for note in out["settings"]["notes"])
    report = Path(out["report"]).read_text(encoding="utf-8")
    assert "## Subsets" in report and "## Short queries (short-v1, test half" in report


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k", "1,x"], "--k takes comma-separated integers"),
        (["--k", "0"], "--k needs integers from 1 to 500"),
        (["--split", "dev"], "--split must be one of"),
    ],
)
def test_bad_options_give_one_line(args: list[str], message: str, subset: Path, tiny_checkpoint: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--data", str(subset), "--model", str(tiny_checkpoint), *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
