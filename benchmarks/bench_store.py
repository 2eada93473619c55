"""Benchmark the embedded store (qdrant-edge) against numpy brute force, in one run.

    .venv/bin/python benchmarks/bench_store.py            # 10k and 100k points (several minutes)
    .venv/bin/python benchmarks/bench_store.py --quick    # 10k only, while iterating
    .venv/bin/python benchmarks/bench_store.py --schema cases-hnsw --sizes 100000

Synthetic cases shaped like the real ones: three 512-d low-rank vectors per point (rank 32 plus
noise, L2-normalised), labels drawn with the Open-i frequencies of docs/labels.md (normal only
alone), views and splits. Every query runs on the store (``EdgeStore.search``, payload included) and
on numpy (score all vectors, mask by the same filter, top 10); recall@10 is measured against the
numpy result. Ratios are store/numpy from the same run, so the machine cancels out. Not a test.
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

from cxrsearch.store import Filter, Point, load_schema, point_id
from cxrsearch.store.edge import EdgeStore

# Reports per label among the 3,955 real Open-i reports (docs/labels.md).
OPENI_COUNTS = {
    "airspace disease": 125, "aortic atherosclerosis": 132, "atelectasis": 332, "calcified granuloma": 421,
    "calcinosis": 305, "cardiomegaly": 395, "cicatrix": 196, "consolidation": 30, "edema": 100, "emphysema": 145,
    "fracture": 84, "hiatal hernia": 48, "hyperinflation": 216, "hypoinflation": 291, "lung opacity": 551,
    "nodule": 121, "pleural effusion": 161, "pneumonia": 42, "pneumothorax": 23, "scoliosis": 99,
    "support devices": 379, "tortuous aorta": 252, "normal": 1391,
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
        any_labels=("cardiomegaly", "pleural effusion"), not_labels=("support devices",), view="PA"),
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

    return {
        "labels": labels, "table": table, "view": rng.choice(np.array(VIEWS), size=n, p=VIEW_P),
        "split": rng.choice(np.array(["train", "val", "test"]), size=n, p=(0.8, 0.1, 0.1)),
        "vectors": {name: vectors(n) for name in ("image", "text", "joint")}, "queries": vectors,
    }


def points(data: dict, start: int, stop: int):
    labels, table = data["labels"], data["table"]
    for i in range(start, stop):
        present = [lab for lab, on in zip(labels, table[i]) if on]
        yield Point(point_id("bench", f"case-{i}"), {name: v[i] for name, v in data["vectors"].items()}, {
            "study_id": f"CXR{i // 2}", "image_id": f"CXR{i // 2}_IM-{i}", "view": str(data["view"][i]),
            "split": str(data["split"][i]), "labels": present, "labels_true": present,
            "probs": {lab: round(0.9 if on else 0.05, 3) for lab, on in zip(labels, table[i])},
            "impression": "No acute cardiopulmonary abnormality. Heart size within normal limits." * (1 + i % 2),
        })


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
    ids = np.array([point_id("bench", f"case-{i}") for i in range(n)])
    root = Path(tempfile.mkdtemp(prefix=f"bench-store-{n}-", dir=args.tmp))
    store = EdgeStore(root)
    store.create_collection("bench", load_schema(args.schema), args.dim)
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
        rows.append({
            "points": n, "filter": name, "passing": float(numpy_mask(data, flt).mean()),
            "store_p50_ms": float(np.percentile(store_ms, 50)), "store_p95_ms": float(np.percentile(store_ms, 95)),
            "numpy_p50_ms": float(np.percentile(numpy_ms, 50)), "numpy_p95_ms": float(np.percentile(numpy_ms, 95)),
            "recall_at_10": float(np.mean(recalls)), "min_recall_at_10": float(np.min(recalls)),
        })
    store.close()
    size_mb = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    shutil.rmtree(root)
    return {"points": n, "upsert_points_per_s": n / upsert_s, "optimise_s": optimise_s, "reopen_s": reopen_s,
            "disk_mb": size_mb, "queries": rows}


def print_report(results: list[dict], args: argparse.Namespace) -> None:
    print(f"# bench_store: schema {args.schema}, {args.dim}-d, {args.queries} queries per row, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"load average {args.load_before:.1f} before / {os.getloadavg()[0]:.1f} after")
    print()
    print("| points | filter | passing | store p50 / p95 ms | numpy p50 / p95 ms | p50 ratio | recall@10 (min) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for res in results:
        for r in res["queries"]:
            print(f"| {r['points']:,} | {r['filter']} | {100 * r['passing']:.1f}% | "
                  f"{r['store_p50_ms']:.2f} / {r['store_p95_ms']:.2f} | "
                  f"{r['numpy_p50_ms']:.2f} / {r['numpy_p95_ms']:.2f} | {r['store_p50_ms'] / r['numpy_p50_ms']:.2f}x | "
                  f"{r['recall_at_10']:.4f} ({r['min_recall_at_10']:.1f}) |")
    print()
    print("| points | upsert points/s | optimise (close) s | reopen s (median of 3) | disk MB |")
    print("|---:|---:|---:|---:|---:|")
    for res in results:
        print(f"| {res['points']:,} | {res['upsert_points_per_s']:,.0f} | {res['optimise_s']:.2f} | "
              f"{res['reopen_s']:.2f} | {res['disk_mb']:,.0f} |")
    largest = max(results, key=lambda r: r["points"])
    filtered = [r for r in largest["queries"] if r["filter"] != "none"]
    worst_ratio = max(r["store_p50_ms"] / r["numpy_p50_ms"] for r in filtered)
    worst_recall = min(r["recall_at_10"] for r in largest["queries"])
    print()
    print(f"targets at {largest['points']:,} points: filtered p50 <= 0.5x numpy: worst {worst_ratio:.2f}x "
          f"{'PASS' if worst_ratio <= 0.5 else 'FAIL'}; recall@10 >= 0.99: worst {worst_recall:.4f} "
          f"{'PASS' if worst_recall >= 0.99 else 'FAIL'}; reopen <= 1 s: {largest['reopen_s']:.2f} s "
          f"{'PASS' if largest['reopen_s'] <= 1.0 else 'FAIL'}")


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
