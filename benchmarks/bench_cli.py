"""Cold start-up of one ``cxrsearch search`` per process: what an educator waits for, per query.

    .venv/bin/python benchmarks/bench_cli.py --model runs/cpu-minilm-fs \\
        --store runs/bench-retrieval-fs/store --collection bench-retrieval
    .venv/bin/python benchmarks/bench_cli.py            # builds a tiny checkpoint + store in a temp dir

Each command runs ``--runs`` times (default 5) as a fresh process after one untimed warm-up (so the
OS file cache is warm, as it is for someone querying all afternoon); the median wall time counts.
``python -c pass`` and ``cxrsearch --help`` run in the same session, so the ratios cancel the
machine out. Bytecode is cached (in the temporary directory) as for an installed package.
Targets (issue 14): ``search --text`` <= 3x ``--help``, ``search --image`` <= 3 s, ``search --like``
<= 2x ``--help``. Every search must exit 0. Not a test.

``--image-config cpu-minilm`` adds image queries with a checkpoint of real size (Swin-T), trained one
epoch here on the real radiographs: once on torch, once on its ONNX export (onnxruntime, no torch).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cxrsearch.cli.main"]
DATA = Path(os.environ.get("CXRSEARCH_TEST_DATA", REPO.parent / "shared" / "data"))


def _timed(argv: list[str], runs: int, env: dict[str, str]) -> dict[str, float]:
    """Median / min / max wall seconds of ``runs`` fresh processes (one warm-up first)."""
    times = []
    for attempt in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
        if attempt:
            times.append(elapsed)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def _build(root: Path) -> tuple[Path, Path, str]:
    """A tiny-test checkpoint (random weights) and a store indexing a few real reports."""
    import torch

    from cxrsearch.data.labels import label_names
    from cxrsearch.model.build import create_model
    from cxrsearch.model.checkpoint import save_checkpoint
    from cxrsearch.model.config import get_config

    torch.manual_seed(0)
    labels = label_names()
    model_dir = root / "tiny"
    save_checkpoint(model_dir, create_model(get_config("tiny-test"), labels), thresholds=[0.5] * len(labels))
    store, collection = root / "store", "bench-cli"
    argv = [
        *CLI,
        "index",
        str(DATA / "openi"),
        "--model",
        str(model_dir),
        "--store",
        str(store),
        "--collection",
        collection,
        "--limit",
        "200",
    ]
    if (DATA / "images").is_dir():
        argv += ["--images", str(DATA / "images")]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"indexing the bench store failed: {done.stderr.strip()[-600:]}")
    return model_dir, store, collection


def _build_image_checkpoint(root: Path, config: str) -> tuple[Path, Path, str]:
    """``config`` trained one epoch (random image tower) on 200 real reports and the real radiographs
    linked under the Open-i names of reports 1-9, and a store of them: an image-query checkpoint of
    the real size. Its results mean nothing; its start-up cost is what an image query pays."""
    from cxrsearch.index import IndexOptions, index_studies
    from cxrsearch.model.train import TrainOptions, train
    from cxrsearch.store.edge import EdgeStore

    sys.path.insert(0, str(REPO))
    from tests.search.layout import LINKS

    images = root / "films"
    for name, target in LINKS.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).symlink_to(DATA / "images" / target)
    reports = DATA / "openi" / "NLMCXR_reports.tgz"
    options = TrainOptions(
        data=reports, config=config, out=root / "image-ckpt", images=images, image_encoder="random",
        epochs=1, batch_size=16, limit=200, seed=0,
    )  # fmt: skip
    checkpoint = train(options).checkpoint
    store, collection = root / "image-store", "bench-cli-images"
    with EdgeStore(store) as opened:
        index_studies(
            IndexOptions(source=reports, images_dir=images, collection=collection, limit=200), opened, checkpoint
        )
    return checkpoint, store, collection


def _like_id(store: Path, collection: str) -> str:
    from cxrsearch.store import open_store

    backend = open_store(store)
    try:
        point = next(iter(backend.scroll(collection, None)))
    finally:
        backend.close()
    return str(point.payload["study_id"])


def _learned_images(model: Path | None, store: Path, collection: str) -> bool:
    """Whether the checkpoint (``--model``, else the one the collection records) learned from films."""
    from cxrsearch.index.record import recorded_model
    from cxrsearch.model.checkpoint import read_checkpoint_info
    from cxrsearch.store.edge import EdgeStore

    if model is None:
        with EdgeStore(store) as opened:
            record = recorded_model(opened, collection)
        model = None if record is None else Path(record.checkpoint)
    return model is not None and "image" in (read_checkpoint_info(model).trained_modalities or ())


@contextlib.contextmanager
def _serving(store: Path, collection: str, model: Path | None, env: dict[str, str]):
    """A ``cxrsearch serve`` holding ``collection`` for the duration (its record tells the CLI where)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [*CLI, "serve", "--store", str(store), "--collection", collection, "--port", str(port)]
    if model is not None:
        argv += ["--model", str(model)]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = store / collection / ".serve.json"
    try:
        deadline = time.monotonic() + 180
        while not record.is_file():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("cxrsearch serve did not start")
            time.sleep(0.2)
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint directory (default: build a tiny one)")
    parser.add_argument("--store", type=Path, default=None, help="embedded store holding --collection")
    parser.add_argument("--collection", default=None, help="collection indexed with --model")
    parser.add_argument("--image", type=Path, default=DATA / "images" / "png" / "CXR1_1_IM-0001-3001.png")
    parser.add_argument("--text", default="enlarged heart")
    parser.add_argument("--label", default="cardiomegaly")
    parser.add_argument("--like", default=None, help="study id for --like (default: the first point's study)")
    parser.add_argument(
        "--image-config",
        default=None,
        help="also time image queries with a checkpoint of this config (e.g. cpu-minilm: Swin-T), trained "
        "one epoch here on the real radiographs, on torch and then on its ONNX export",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--cli",
        default=None,
        help="command that runs the CLI, e.g. to time another checkout (default: this Python, -m cxrsearch.cli.main)",
    )
    args = parser.parse_args()
    if args.cli:
        CLI[:] = args.cli.split()

    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        if args.store is None:
            model, store, collection = _build(Path(tmp))
        else:
            model, store, collection = args.model, args.store, args.collection or "cases"
        like = args.like or _like_id(store, collection)
        # bytecode cached, as for any installed package (pip compiles it); a PYTHONDONTWRITEBYTECODE
        # environment (this project's sandboxes set it) would otherwise recompile every module per run
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"CXRSEARCH_CACHE": str(Path(tmp) / "cache"), "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        where = ["--store", str(store), "--collection", collection, "-k", "5"]
        if model is not None:
            where += ["--model", str(model)]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "cxrsearch --help": [*CLI, "--help"],
            "search --text": [*CLI, "search", "--text", args.text, "--label", args.label, *where],
            "search --like": [*CLI, "search", "--like", like, *where],
        }
        if _learned_images(model, store, collection):  # a text-only checkpoint refuses image queries
            commands["search --image"] = [*CLI, "search", "--image", str(args.image), *where]
        results = {name: _timed(argv, args.runs, env) for name, argv in commands.items()}
        if args.image_config:
            from cxrsearch.model.checkpoint import export_image_side

            image_model, image_store, image_collection = _build_image_checkpoint(Path(tmp), args.image_config)
            argv = [*CLI, "search", "--image", str(args.image), "--store", str(image_store)]
            argv += ["--collection", image_collection, "--model", str(image_model), "-k", "5"]
            results[f"search --image ({args.image_config}, torch)"] = _timed(argv, args.runs, env)
            export_image_side(image_model)
            results[f"search --image ({args.image_config}, onnx)"] = _timed(argv, args.runs, env)
        # the warm path for terminal users: the same text search answered by a running `cxrsearch serve`
        served = [
            *CLI,
            "search",
            "--text",
            args.text,
            "--label",
            args.label,
            "--store",
            str(store),
            "--collection",
            collection,
            "-k",
            "5",
        ]
        with _serving(store, collection, model, env):
            results["search --text via serve"] = _timed(served, args.runs, env)
    help_s = results["cxrsearch --help"]["median_s"]
    print(
        f"cold CLI start-up, median of {args.runs} fresh processes (warm OS cache); "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; model {model}"
    )
    print(f"{'command':<40} {'median s':>9} {'min s':>7} {'max s':>7} {'x --help':>9}")
    for name, r in results.items():
        print(f"{name:<40} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} {r['median_s'] / help_s:9.2f}")
    image_rows = [name for name in results if name.startswith("search --image")]
    targets = {
        "search --text <= 3x --help": results["search --text"]["median_s"] <= 3 * help_s,
        "search --image <= 3 s": min(results[n]["median_s"] for n in image_rows) <= 3.0 if image_rows else None,
        "search --like <= 2x --help": results["search --like"]["median_s"] <= 2 * help_s,
    }
    for name, ok in targets.items():
        print(f"{'n/a (the checkpoint learned no images)' if ok is None else 'met ' if ok else 'MISSED'} {name}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "targets": targets}, indent=2) + "\n")


if __name__ == "__main__":
    main()
