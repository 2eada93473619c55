"""Warm ``/api/search`` of ``cxrsearch serve`` next to the cold CLI: what the web app buys.

    .venv/bin/python benchmarks/bench_serve.py                       # the demo's store (make demo)
    .venv/bin/python benchmarks/bench_serve.py --store runs/bench-retrieval-fs/store \\
        --collection bench-retrieval --model runs/cpu-minilm-fs

1. **Cold CLI**: ``cxrsearch search --text T --label L --json`` as a fresh process, ``--runs`` times
   after one untimed warm-up (median wall time): the model and the store load every time.
2. **Warm server**: the same store and model loaded once in ``cxrsearch serve``'s app, served by
   uvicorn on a loopback port; ``--queries`` text queries with the label filter over HTTP (one
   keep-alive client, after 20 warm-up queries), cycling through educator phrasings: p50 / p95 of
   the round trip. The CLI's own query is sent too, and its JSON must equal the CLI's output.

The store is copied into a temporary folder first (the embedded store admits one process per
collection, and the copy leaves the original alone). Target (issue 15): warm p50 <= 50 ms on 2 cores.
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CLI = [sys.executable, "-m", "cxrsearch.cli.main"]
QUERIES = (
    "enlarged heart",
    "small right pleural effusion",
    "no acute cardiopulmonary abnormality",
    "cardiomegaly with pulmonary edema",
    "left lower lobe opacity",
    "hyperinflated lungs emphysema",
    "calcified granuloma",
    "degenerative changes of the thoracic spine",
)


def cold_cli(argv: list[str], runs: int) -> tuple[dict[str, float], object]:
    times, out = [], None
    for attempt in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()[-600:]}")
        out = json.loads(done.stdout)
        if attempt:
            times.append(elapsed)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": runs}, out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", type=Path, default=None, help="embedded store (default: $CXRSEARCH_STORE / the demo's)"
    )
    parser.add_argument("--collection", default="cases")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--text", default="enlarged heart")
    parser.add_argument("--label", default="cardiomegaly")
    parser.add_argument("--runs", type=int, default=5, help="cold CLI runs")
    parser.add_argument("--queries", type=int, default=200, help="warm HTTP queries")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = parser.parse_args()

    from cxrsearch import paths

    source = paths.store_dir(args.store)
    if not (source / args.collection).is_dir():
        raise SystemExit(f"no collection {args.collection!r} in {source}: run `make demo` first, or pass --store")
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    store_dir = tmp / "store"
    shutil.copytree(source, store_dir, ignore=shutil.ignore_patterns("*.lock", "LOCK"))
    model = [] if args.model is None else ["--model", str(args.model)]
    query = ["--text", args.text, "--label", args.label]
    try:
        cold, cli_json = cold_cli(
            [*CLI, "search", *query, "--json", "--store", str(store_dir), "--collection", args.collection, *model],
            args.runs,
        )
        help_cold, _ = cold_cli([sys.executable, "-c", "print('{}')"], args.runs)
        warm, api_json, in_process = serve_and_measure(store_dir, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    same = api_json == cli_json
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "store": str(source),
        "collection": args.collection,
        "query": {"text": args.text, "label": args.label},
        "cold_cli": cold,
        "python_startup": help_cold,
        "warm_http": warm,
        "warm_in_process": in_process,
        "api_equals_cli_json": same,
        "hits": len(cli_json) if isinstance(cli_json, list) else None,
        "speedup_p50": cold["median_s"] / warm["p50_ms"] * 1000.0,
    }
    print(json.dumps(report, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not same:
        raise SystemExit("the API's JSON differs from `cxrsearch search --json`")


def serve_and_measure(store_dir: Path, args: argparse.Namespace) -> tuple[dict, object, dict]:
    import httpx
    import uvicorn

    from cxrsearch.serve.app import create_app
    from cxrsearch.serve.service import Service
    from cxrsearch.serve.settings import ServeSettings
    from cxrsearch.store import open_store

    backend = open_store(store_dir)
    service = Service(
        backend, ServeSettings(collection=args.collection, model=args.model, cache=store_dir.parent / "cache")
    )
    start = time.perf_counter()
    service.warm()
    load_s = time.perf_counter() - start
    app = create_app(service)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            api_json = client.get("/api/search", params={"text": args.text, "label": args.label}).json()
            for i in range(20):
                client.get("/api/search", params={"text": QUERIES[i % len(QUERIES)], "label": args.label})
            times = []
            for i in range(args.queries):
                t0 = time.perf_counter()
                response = client.get("/api/search", params={"text": QUERIES[i % len(QUERIES)], "label": args.label})
                times.append((time.perf_counter() - t0) * 1000.0)
                response.raise_for_status()
        inner = []
        for i in range(min(args.queries, 100)):
            spec = service.spec(text=QUERIES[i % len(QUERIES)], all_labels=(args.label,))
            t0 = time.perf_counter()
            service.search(spec)
            inner.append((time.perf_counter() - t0) * 1000.0)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.app_state.jobs.close()
        service.close()
    warm = {
        "p50_ms": statistics.median(times),
        "p95_ms": percentile(times, 0.95),
        "mean_ms": statistics.fmean(times),
        "queries": len(times),
        "model_load_s": load_s,
    }
    return warm, api_json, {"p50_ms": statistics.median(inner), "p95_ms": percentile(inner, 0.95)}


if __name__ == "__main__":
    main()
