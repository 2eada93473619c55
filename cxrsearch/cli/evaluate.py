"""``cxrsearch evaluate``: classification and retrieval quality of a checkpoint, with baselines.

Progress goes to stderr (rich bars on a terminal, plain lines otherwise). Stdout gets rich tables,
or with ``--json`` one JSON object and nothing else. The markdown report and its PNG plot are always
written (``--out``, default ``<outputs>/evaluation/<model>-<fingerprint>-<split>.md``).
torch is imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, cast

import typer
from rich import box
from rich.table import Table

from cxrsearch.cli.progress import StageProgress
from cxrsearch.cli.render import console, err_console, print_json

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.evaluate.retrieval import RetrievalResult, RetrievalRow
    from cxrsearch.evaluate.run import EvaluationResult


def parse_ks(text: str) -> tuple[int, ...]:
    """``"1,5,10"`` -> ``(1, 5, 10)``; anything else is a one-line error."""
    from cxrsearch.errors import ConfigError

    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--k takes comma-separated integers such as 1,5,10, not {text!r}") from None
    if not values:
        raise ConfigError("--k is empty")
    return values


def _fmt(value) -> str:
    from cxrsearch.evaluate.report import fmt

    return fmt(value)


def _tables(result: EvaluationResult, report_path: Path, plot_path: Path) -> None:
    """The run on stdout: a summary, one retrieval table per setting, the short queries (notes on stderr)."""
    console.print(_summary_table(result, report_path, plot_path), highlight=False)
    for note in result.settings.get("notes", []):
        err_console.print(f"note: {note}")
    for setting in result.retrieval.pools:
        console.print(_retrieval_table(result, setting))
    console.print(_short_queries_table(result))


def _summary_table(result: EvaluationResult, report_path: Path, plot_path: Path) -> Table:
    """What was evaluated, the classification and cross-modal numbers, where the report is, how long it took."""
    cls = result.classification
    head = Table(
        title=f"cxrsearch evaluate: {result.checkpoint['model']} on {result.settings['split']}", show_header=False
    )
    head.add_column("what", style="bold")
    head.add_column("value", overflow="fold")
    sizes = ", ".join(f"{k} {v:,}" for k, v in result.data["split_sizes"].items())
    head.add_row("checkpoint", f"{result.checkpoint['path']} (fingerprint {result.checkpoint['fingerprint'][:12]})")
    head.add_row("data", f"{result.data['source']} ({sizes})")
    head.add_row(
        "classification",
        f"{cls.studies} studies: macro AUROC {_fmt(cls.macro_auroc)}, AP "
        f"{_fmt(cls.macro_average_precision)}, F1 {_fmt(cls.macro_f1)} at checkpoint thresholds "
        f"({len(cls.scored)} labels; {len(cls.too_few_positives)} with < {cls.min_positives} positives "
        "left out, listed in the report)",
    )
    for cm in result.crossmodal:
        value = cm.note or (
            f"{cm.pairs} frontal pairs: image->report "
            + " ".join(f"{k} {_fmt(v)}" for k, v in cm.image_to_report.items())
            + "; report->image "
            + " ".join(f"{k} {_fmt(v)}" for k, v in cm.report_to_image.items())
        )
        head.add_row(f"CXR-CLIP protocol ({cm.method})", value)
    head.add_row("report", f"{report_path} (plot {plot_path.name})")
    head.add_row("time", f"{result.timings['total']:.1f} s")
    return head


def _retrieval_table(result: EvaluationResult, setting: str) -> Table:
    """One setting: per mode, each method's strict metrics and its lenient ``P@max(k)`` (or why the
    mode did not run)."""
    from cxrsearch.evaluate.retrieval import MODES

    r = result.retrieval
    split, size = r.pools[setting]
    top = max(r.ks)
    table = Table(
        title=f"Retrieval {setting}: {result.settings['split']} queries -> {size:,} {split} cases "
        f"(strict relevance; * lenient)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for name in ("query", "method", "n", *[f"P@{k}" for k in r.ks], f"mAP@{top}", f"nDCG@{top}", "MRR", f"P@{top}*"):
        text = name in ("query", "method")
        table.add_column(name, justify="left" if text else "right", no_wrap=True, min_width=None if text else 5)
    for mode in MODES:
        status = next(s for s in r.modes if s.setting == setting and s.mode == mode)
        if status.note:
            table.add_row(mode.removesuffix("->case"), status.note, "0", *["-"] * (len(r.ks) + 4), end_section=True)
        else:
            _add_mode_rows(table, r, setting, mode)
    return table


def _add_mode_rows(table: Table, r: RetrievalResult, setting: str, mode: str) -> None:
    """The rows of the methods that ran in (setting, mode), the mode named on the first, a section
    line after the last."""
    from cxrsearch.evaluate.retrieval import METHODS

    top = max(r.ks)
    methods = [m for m in METHODS if r.row(setting, mode, m, "strict") is not None]
    for i, method in enumerate(methods):
        strict = cast("RetrievalRow", r.row(setting, mode, method, "strict"))
        lenient = cast("RetrievalRow", r.row(setting, mode, method, "lenient"))
        m = strict.metrics
        table.add_row(
            mode.removesuffix("->case") if i == 0 else "",
            method,
            str(strict.queries),
            *[_fmt(m[f"P@{k}"]) for k in r.ks],
            _fmt(m[f"mAP@{top}"]),
            _fmt(m[f"nDCG@{top}"]),
            _fmt(m["MRR"]),
            _fmt(lenient.metrics[f"P@{top}"]),
            end_section=i == len(methods) - 1,
        )


def _short_queries_table(result: EvaluationResult) -> Table:
    """The short-query protocol: each method's strict metrics."""
    from cxrsearch.evaluate.retrieval import METHODS

    sq, ks = result.short_queries, result.retrieval.ks
    top = max(ks)
    table = Table(
        title=f"Short queries ({sq.version}, {sq.half} half) -> every indexed case (strict; "
        f"novel / non-normal subsets of the full-report queries are in the report)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for name in ("method", "n", *[f"P@{k}" for k in ks], f"mAP@{top}", "MRR"):
        table.add_column(name, justify="left" if name == "method" else "right", no_wrap=True)
    for method in METHODS:
        row = sq.row(method)
        if row is not None:
            m = row.metrics
            table.add_row(
                method, str(row.queries), *[_fmt(m[f"P@{k}"]) for k in ks], _fmt(m[f"mAP@{top}"]), _fmt(m["MRR"])
            )
    return table


def evaluate(
    data: Path = typer.Option(
        ..., "--data", help="NLMCXR_reports.tgz, a folder of XML reports, or a data folder holding either."
    ),
    model: Path = typer.Option(..., "--model", help="Checkpoint directory (from `cxrsearch train`)."),
    images: Optional[Path] = typer.Option(
        None, "--images", help="Folder of Open-i radiographs (default: <data folder>/images if present)."
    ),
    split: str = typer.Option("test", "--split", help="Split whose studies are the queries: train, val or test."),
    k: str = typer.Option("1,5,10", "--k", help="Cut-offs for P@k, R@k, mAP@k and nDCG@k, comma-separated."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Markdown report path (the PNG plot is written next to it)."
    ),
) -> None:
    """Evaluate a checkpoint on Open-i: classification at its own thresholds, and retrieval
    (text/image/both/by example) judged by MeSH labels, against BM25, untrained-tower and random baselines."""
    from cxrsearch import paths
    from cxrsearch.data.info import find_companions
    from cxrsearch.evaluate.report import result_json, write_markdown, write_plot
    from cxrsearch.evaluate.run import EvaluationOptions
    from cxrsearch.evaluate.run import evaluate as run_evaluation

    found_images, metadata = find_companions(data)
    options = EvaluationOptions(
        data=data,
        model=model,
        images=images or found_images,
        metadata=metadata,
        split=split.strip().lower(),
        ks=parse_ks(k),
    )
    with StageProgress() as progress:
        result = run_evaluation(options, progress=progress)
    if out is None:
        out = (
            paths.output_dir()
            / "evaluation"
            / f"{result.checkpoint['model']}-{result.checkpoint['fingerprint'][:12]}-{options.split}.md"
        )
    plot = write_plot(result, out.with_name(out.stem + "-precision.png"))
    report = write_markdown(result, out, plot)
    if json_out:
        print_json({**result_json(result), "report": str(report), "plot": str(plot)})
        return
    _tables(result, report, plot)
