"""Benchmark the embedded store (qdrant-edge) against numpy brute force, in one run.

    .venv/bin/python benchmarks/bench_store.py            # 10k and 100k points (several minutes)
    .venv/bin/python benchmarks/bench_store.py --quick    # 10k only, while iterating
    .venv/bin/python benchmarks/bench_store.py --schema cases-hnsw --sizes 100000

Synthetic cases shaped like the real ones: three 512-d low-rank vectors per point (rank 32 plus
noise, L2-normalised), labels drawn with the Open-i frequencies of docs/labels.md (normal only
alone), views and splits, a report text written from the labels (affirmed findings, denied
others) with its BM25 vector, and the label-probability vector. Every query runs on the store
(``EdgeStore.search``, payload included) and on numpy (score all vectors, mask by the same filter,
top 10); recall@10 is measured against the numpy result. Ratios are store/numpy from the same run,
so the machine cancels out.

Hybrid text search is timed against the dense-only ``text`` query of the same run (target <= 2x): as
``cxrsearch search`` runs it without fusion.json (``run_query`` with ``DEFAULT_WEIGHTS``: its
components, fusion and per-query coefficients), and with all three prefetches (dense ``text``,
sparse ``bm25``, ``label_probs``) fused by weighted RRF. Each prefetch's own top 10 is checked
against its exact oracle (numpy cosine for
``text``, the numpy dot product for ``label_probs``, numpy IDF-weighted BM25 over the same sparse
vectors for ``bm25``). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrsearch.search.modes import DEFAULT_WEIGHTS, FusionWeights, run_query
from cxrsearch.store import Filter, Point, load_schema, point_id
from cxrsearch.store.checks import prefetch_limit
from cxrsearch.store.edge import EdgeStore
from cxrsearch.store.schema import Bm25Spec
from cxrsearch.text.bm25 import average_length, embed_documents, embed_query

# Reports per label among the 3,955 real Open-i reports (docs/labels.md).
OPENI_COUNTS = {
    "airspace disease": 125,
    "aortic atherosclerosis": 132,
    "atelectasis": 332,
    "calcified granuloma": 421,
    "calcinosis": 305,
    "cardiomegaly": 395,
    "cicatrix": 196,
    "consolidation": 30,
    "edema": 100,
    "emphysema": 145,
    "fracture": 84,
    "hiatal hernia": 48,
    "hyperinflation": 216,
    "hypoinflation": 291,
    "lung opacity": 551,
    "nodule": 121,
    "pleural effusion": 161,
    "pneumonia": 42,
    "pneumothorax": 23,
    "scoliosis": 99,
    "support devices": 379,
    "tortuous aorta": 252,
    "normal": 1391,
}
OPENI_REPORTS = 3955
VIEWS = ("PA", "LATERAL", "AP")
VIEW_P = (0.48, 0.48, 0.04)
FILTERS = {
    "none": None,
    "normal": Filter(all_labels=("normal",)),
    "cardiomegaly": Filter(all_labels=("cardiomegaly",)),
    "pleural effusion": Filter(all_labels=("pleural effusion",)),
    "pneumothorax": Filter(all_labels=("pneumothorax",)),
    "any(cardiomegaly, effusion), not devices, PA": Filter(
        any_labels=("cardiomegaly", "pleural effusion"), not_labels=("support devices",), view="PA"
    ),
}


def make_data(n: int, dim: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = list(OPENI_COUNTS)
    p_normal = OPENI_COUNTS["normal"] / OPENI_REPORTS
    # 'normal' only ever comes alone: draw it first, then the others among non-normal cases with
    # the conditional frequency that keeps every label's overall frequency at its Open-i value.
    freqs = np.array([OPENI_COUNTS[lab] / OPENI_REPORTS / (1 - p_normal) for lab in labels])
    normal = labels.index("normal")
    table = rng.random((n, len(labels))) < freqs
    table[:, normal] = rng.random(n) < p_normal
    table[table[:, normal], :normal] = False
    basis = rng.normal(size=(32, dim)).astype(np.float32)

    def vectors(count: int) -> np.ndarray:
        signal = rng.normal(size=(count, 32)).astype(np.float32) @ basis
        x = signal + 0.3 * rng.normal(size=(count, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    reports = [_report(labels, row, rng) for row in table]
    return {
        "labels": labels,
        "table": table,
        "view": rng.choice(np.array(VIEWS), size=n, p=VIEW_P),
        "reports": reports,
        "probs": np.where(table, 0.9, 0.05).astype(np.float32) + rng.random(table.shape).astype(np.float32) * 0.05,
        "split": rng.choice(np.array(["train", "val", "test"]), size=n, p=(0.8, 0.1, 0.1)),
        "vectors": {name: vectors(n) for name in ("image", "text", "joint")},
        "queries": vectors,
    }


def _report(labels: list[str], row: np.ndarray, rng: np.random.Generator) -> str:
    """A report-like text: the case's findings affirmed, three others denied."""
    present = [lab for lab, on in zip(labels, row) if on and lab != "normal"]
    absent = [lab for lab, on in zip(labels, row) if not on and lab != "normal"]
    denied = rng.choice(absent, size=min(3, len(absent)), replace=False) if absent else []
    said = [f"Mild {lab}." for lab in present] or ["No acute cardiopulmonary abnormality."]
    return " ".join(said + [f"No {lab}." for lab in denied])


def points(data: dict, start: int, stop: int):
    labels, table = data["labels"], data["table"]
    for i in range(start, stop):
        present = [lab for lab, on in zip(labels, table[i]) if on]
        vectors = {name: v[i] for name, v in data["vectors"].items()}
        vectors.update(label_probs=data["probs"][i], bm25=data["bm25"][i])
        yield Point(
            point_id("bench", f"case-{i}"),
            vectors,
            {
                "study_id": f"CXR{i // 2}",
                "image_id": f"CXR{i // 2}_IM-{i}",
                "view": str(data["view"][i]),
                "split": str(data["split"][i]),
                "labels": present,
                "labels_true": present,
                "probs": {lab: round(0.9 if on else 0.05, 3) for lab, on in zip(labels, table[i])},
                "impression": data["reports"][i],
            },
        )


def numpy_mask(data: dict, flt: Filter | None) -> np.ndarray:
    """The filter evaluated with numpy over the label table (part of the brute-force cost)."""
    n = len(data["view"])
    if flt is None:
        return np.ones(n, dtype=bool)
    col = {lab: data["table"][:, j] for j, lab in enumerate(data["labels"])}
    ok = np.ones(n, dtype=bool)
    for lab in flt.all_labels:
        ok &= col[lab]
    if flt.any_labels:
        ok &= np.logical_or.reduce([col[lab] for lab in flt.any_labels])
    for lab in flt.not_labels:
        ok &= ~col[lab]
    if flt.view is not None:
        ok &= data["view"] == flt.view
    return ok


def numpy_top(matrix: np.ndarray, data: dict, flt: Filter | None, query: np.ndarray, k: int) -> np.ndarray:
    scores = matrix @ query
    if flt is not None:
        scores = np.where(numpy_mask(data, flt), scores, -np.inf)
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top])]
    return top[np.isfinite(scores[top])]


def bench_size(n: int, args: argparse.Namespace) -> dict:
    data = make_data(n, args.dim, seed=n)
    bm25 = Bm25Spec(1.2, 0.75, average_length(data["reports"]))
    data["bm25"] = embed_documents(data["reports"], bm25)
    ids = np.array([point_id("bench", f"case-{i}") for i in range(n)])
    root = Path(tempfile.mkdtemp(prefix=f"bench-store-{n}-", dir=args.tmp))
    store = EdgeStore(root)
    store.create_collection(
        "bench", load_schema(args.schema).with_bm25_avg_len(bm25.avg_len), args.dim, len(data["labels"])
    )
    upsert_s = 0.0
    for start in range(0, n, 1000):
        chunk = list(points(data, start, min(n, start + 1000)))  # building the payloads is not timed
        t0 = time.perf_counter()
        store.upsert("bench", chunk, batch=1000)
        upsert_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    store.close()  # runs the optimiser: builds the quantised (or HNSW) segments
    optimise_s = time.perf_counter() - t0
    reopens = []
    for attempt in range(3):  # a fresh process would do the same: open the store, load the shard
        t0 = time.perf_counter()
        store = EdgeStore(root)
        store.count("bench")
        reopens.append(time.perf_counter() - t0)
        if attempt < 2:
            store.close()
    reopen_s = float(np.median(reopens))

    matrix = data["vectors"]["joint"]
    queries = data["queries"](args.queries)
    rows = []
    for name, flt in FILTERS.items():
        # Each side runs its queries as one block (after 5 warm-up queries): interleaving them would let
        # numpy's BLAS threads, still spinning after a call, steal the CPU from the next store query.
        store_ms, numpy_ms, found, exact = [], [], [], []
        for q in queries[:5]:
            store.search("bench", "joint", q, flt, limit=10)
        for q in queries:
            t = time.perf_counter()
            hits = store.search("bench", "joint", q, flt, limit=10)
            store_ms.append(1000 * (time.perf_counter() - t))
            found.append({h.id for h in hits})
        for q in queries[:5]:
            numpy_top(matrix, data, flt, q, 10)
        for q in queries:
            t = time.perf_counter()
            top = numpy_top(matrix, data, flt, q, 10)
            numpy_ms.append(1000 * (time.perf_counter() - t))
            exact.append(set(ids[top]))
        recalls = [len(truth & got) / max(1, len(truth)) for truth, got in zip(exact, found)]
        rows.append(
            {
                "points": n,
                "filter": name,
                "passing": float(numpy_mask(data, flt).mean()),
                "store_p50_ms": float(np.percentile(store_ms, 50)),
                "store_p95_ms": float(np.percentile(store_ms, 95)),
                "numpy_p50_ms": float(np.percentile(numpy_ms, 50)),
                "numpy_p95_ms": float(np.percentile(numpy_ms, 95)),
                "recall_at_10": float(np.mean(recalls)),
                "min_recall_at_10": float(np.min(recalls)),
            }
        )
    hybrid = bench_hybrid(store, data, ids, queries, bm25)
    store.close()
    size_mb = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    shutil.rmtree(root)
    return {
        "points": n,
        "upsert_points_per_s": n / upsert_s,
        "optimise_s": optimise_s,
        "reopen_s": reopen_s,
        "disk_mb": size_mb,
        "queries": rows,
        "hybrid": hybrid,
    }


def bm25_oracle(data: dict, bm25: Bm25Spec):
    """Every point's IDF-weighted BM25 score for a sparse query (Qdrant's IDF, query weights 1)."""
    from scipy.sparse import csr_matrix

    vocab: dict[int, int] = {}
    rows, cols, vals = [], [], []
    for i, vec in enumerate(data["bm25"]):
        for t, w in zip(vec.indices, vec.values):
            rows.append(i)
            cols.append(vocab.setdefault(t, len(vocab)))
            vals.append(w)
    matrix = csr_matrix((vals, (rows, cols)), shape=(len(data["bm25"]), len(vocab)))
    df = np.bincount(cols, minlength=len(vocab))
    idf = np.log(1 + (matrix.shape[0] - df + 0.5) / (df + 0.5))

    def scores(query) -> np.ndarray:
        columns = [vocab[t] for t in query.indices if t in vocab]
        return np.asarray(matrix[:, columns] @ idf[columns]).ravel() if columns else np.zeros(matrix.shape[0])

    return scores


def bench_hybrid(store: EdgeStore, data: dict, ids: np.ndarray, queries: np.ndarray, bm25: Bm25Spec) -> dict:
    """Hybrid text query (3 prefetches fused by weighted RRF) against the dense-only text query, same
    queries and filters; each prefetch's top 10 against its exact oracle."""
    rng = np.random.default_rng(1)
    labels = data["labels"]
    asked = [rng.choice([lab for lab in labels if lab != "normal"]) for _ in queries]
    sparse = [embed_query(f"{lab}", bm25) for lab in asked]
    probs = [np.where(np.array(labels) == lab, 0.9, 0.05).astype(np.float32) for lab in asked]
    # the hybrid as a text search without fusion.json runs it (run_query: its components, fusion and
    # per-query coefficients), and all three prefetches fused by RRF (the previous default's shape)
    three = FusionWeights({"text": 0.25, "image": 0.0, "bm25": 0.5, "labels": 8.0}, "three prefetches", "rrf")
    oracle = bm25_oracle(data, bm25)
    out = {}
    for name in ("none", "pleural effusion", "any(cardiomegaly, effusion), not devices, PA"):
        flt = FILTERS[name]
        mask = numpy_mask(data, flt)
        timings: dict[str, list[float]] = {
            "dense": [],
            "hybrid": [],
            "three": [],
            "text@50": [],
            "bm25@50": [],
            "label_probs@50": [],
        }
        recall: dict[str, list[float]] = {"text": [], "bm25": [], "label_probs": []}
        for _ in range(2):  # a warm-up pass, then the timed one
            for key in timings:
                timings[key].clear()
            for q, sq, pq in zip(queries, sparse, probs):
                t = time.perf_counter()
                store.search("bench", "text", q, flt, limit=10)
                timings["dense"].append(1000 * (time.perf_counter() - t))
                vectors = {"text": q, "bm25": sq, "label_probs": pq}
                t = time.perf_counter()
                run_query(store, "bench", "text", vectors, flt, 10, DEFAULT_WEIGHTS)
                timings["hybrid"].append(1000 * (time.perf_counter() - t))
                t = time.perf_counter()
                run_query(store, "bench", "text", vectors, flt, 10, three)
                timings["three"].append(1000 * (time.perf_counter() - t))
                for vec_name, query in (("text", q), ("bm25", sq), ("label_probs", pq)):  # each prefetch alone
                    t = time.perf_counter()
                    store.search("bench", vec_name, query, flt, limit=prefetch_limit(10))
                    timings[f"{vec_name}@50"].append(1000 * (time.perf_counter() - t))
        for q, sq, pq in list(zip(queries, sparse, probs))[:50]:
            exact = {
                "text": data["vectors"]["text"] @ q,
                "bm25": oracle(sq),
                "label_probs": data["probs"] @ pq,  # the schema's dot product
            }
            for vec_name, query in (("text", q), ("bm25", sq), ("label_probs", pq)):
                scores = np.where(mask, exact[vec_name], -np.inf)
                got = store.search("bench", vec_name, query, flt, limit=10)
                if not got:
                    continue
                # recall against the exact top 10, counting ties with the 10th exact score as correct
                kth = np.sort(scores)[::-1][min(9, len(got) - 1)]
                correct = set(ids[scores >= kth - 1e-5])
                recall[vec_name].append(sum(h.id in correct for h in got) / len(got))
        out[name] = {
            "dense_p50_ms": float(np.percentile(timings["dense"], 50)),
            "hybrid_p50_ms": float(np.percentile(timings["hybrid"], 50)),
            "three_p50_ms": float(np.percentile(timings["three"], 50)),
            "prefetch_p50_ms": {k: float(np.percentile(v, 50)) for k, v in timings.items() if "@" in k},
            "recall": {k: float(np.mean(v)) if v else None for k, v in recall.items()},
        }
    return out


def print_report(results: list[dict], args: argparse.Namespace) -> None:
    print(
        f"# bench_store: schema {args.schema}, {args.dim}-d, {args.queries} queries per row, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"load average {args.load_before:.1f} before / {os.getloadavg()[0]:.1f} after"
    )
    print()
    print("| points | filter | passing | store p50 / p95 ms | numpy p50 / p95 ms | p50 ratio | recall@10 (min) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for res in results:
        for r in res["queries"]:
            print(
                f"| {r['points']:,} | {r['filter']} | {100 * r['passing']:.1f}% | "
                f"{r['store_p50_ms']:.2f} / {r['store_p95_ms']:.2f} | "
                f"{r['numpy_p50_ms']:.2f} / {r['numpy_p95_ms']:.2f} | {r['store_p50_ms'] / r['numpy_p50_ms']:.2f}x | "
                f"{r['recall_at_10']:.4f} ({r['min_recall_at_10']:.1f}) |"
            )
    print()
    print("| points | upsert points/s | optimise (close) s | reopen s (median of 3) | disk MB |")
    print("|---:|---:|---:|---:|---:|")
    for res in results:
        print(
            f"| {res['points']:,} | {res['upsert_points_per_s']:,.0f} | {res['optimise_s']:.2f} | "
            f"{res['reopen_s']:.2f} | {res['disk_mb']:,.0f} |"
        )
    print()
    active = "+".join(n for n, w in DEFAULT_WEIGHTS.weights.items() if w > 0)
    print(
        f"| points | filter | dense text p50 ms | hybrid ({DEFAULT_WEIGHTS.fusion}: {active}) p50 ms | ratio | "
        "all three prefetches (rrf) p50 ms | ratio | prefetches alone (limit 50) text / bm25 / label_probs ms | "
        "recall@10 text / bm25 / label_probs |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---|---|")
    for res in results:
        for name, h in res["hybrid"].items():
            rec = " / ".join("-" if v is None else f"{v:.4f}" for v in h["recall"].values())
            alone = " / ".join(f"{v:.2f}" for v in h["prefetch_p50_ms"].values())
            print(
                f"| {res['points']:,} | {name} | {h['dense_p50_ms']:.2f} | {h['hybrid_p50_ms']:.2f} | "
                f"{h['hybrid_p50_ms'] / h['dense_p50_ms']:.2f}x | {h['three_p50_ms']:.2f} | "
                f"{h['three_p50_ms'] / h['dense_p50_ms']:.2f}x | {alone} | {rec} |"
            )
    largest = max(results, key=lambda r: r["points"])
    filtered = [r for r in largest["queries"] if r["filter"] != "none"]
    worst_ratio = max(r["store_p50_ms"] / r["numpy_p50_ms"] for r in filtered)
    worst_recall = min(r["recall_at_10"] for r in largest["queries"])
    print()
    print(
        f"targets at {largest['points']:,} points: filtered p50 <= 0.5x numpy: worst {worst_ratio:.2f}x "
        f"{'PASS' if worst_ratio <= 0.5 else 'FAIL'}; recall@10 >= 0.99: worst {worst_recall:.4f} "
        f"{'PASS' if worst_recall >= 0.99 else 'FAIL'}; reopen <= 1 s: {largest['reopen_s']:.2f} s "
        f"{'PASS' if largest['reopen_s'] <= 1.0 else 'FAIL'}"
    )
    worst_hybrid = max(h["hybrid_p50_ms"] / h["dense_p50_ms"] for h in largest["hybrid"].values())
    worst_three = max(h["three_p50_ms"] / h["dense_p50_ms"] for h in largest["hybrid"].values())
    print(
        f"hybrid text search (as search runs it) at {largest['points']:,} points <= 2x dense-only: worst "
        f"{worst_hybrid:.2f}x {'PASS' if worst_hybrid <= 2.0 else 'FAIL'} (all three prefetches: {worst_three:.2f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k points only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--schema", default="cases")
    parser.add_argument("--tmp", default=None, help="where to build the stores (default: system temp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = [10_000] if args.quick else args.sizes
    args.load_before = os.getloadavg()[0]  # other work on the machine skews both sides: report it
    results = []
    for n in sizes:
        print(f"building {n:,} points...", file=sys.stderr, flush=True)
        results.append(bench_size(n, args))
    print_report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
