"""An :class:`~cxrsearch.evaluate.run.EvaluationResult` as JSON, as a markdown report and as a PNG plot.

- :func:`result_json`: one JSON object; retrieval nested as
  ``retrieval.results[setting][mode][method][relevance] = {"queries", "metrics", "by_primary_label"}``
  (all queries), ``retrieval.subsets[setting][mode][method][subset] = {"queries", "metrics"}``
  (strict; ``novel``, ``non-normal``) and ``short_queries.results[method] = {"queries", "metrics"}``.
- :func:`write_plot`: ``P@k`` against ``k`` (strict relevance), one panel per setting, one line per
  mode and method (matplotlib, Agg backend: no display needed).
- :func:`write_markdown`: settings, data and split sizes, checkpoint fingerprint, timings, machine,
  and every number of the JSON (per-primary-label breakdowns for the historical setting).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cxrsearch.errors import ConfigError
from cxrsearch.evaluate.metrics import METRIC_NAMES
from cxrsearch.evaluate.retrieval import METHODS, MODES

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.evaluate.retrieval import RetrievalRow
    from cxrsearch.evaluate.run import EvaluationResult

_COLOR = {"model": "tab:blue", "untrained": "tab:orange", "tfidf-lr": "tab:red", "bm25": "tab:green", "random": "grey"}
"""The methods drawn in the plot (the components alone are in the tables only)."""
_STYLE = {"text->case": "-", "image->case": "--", "image+text->case": "-.", "case->case": ":"}
_MARK = {"text->case": "o", "image->case": "s", "image+text->case": "^", "case->case": "D"}


def result_json(result: EvaluationResult) -> dict[str, Any]:
    """The whole result as nested dicts and lists of numbers and strings, ready for JSON (``nan`` stays a
    float: ``cxrsearch.cli.render.print_json`` writes it as ``null``)."""
    retrieval = result.retrieval
    results: dict[str, Any] = {}
    subsets: dict[str, Any] = {}
    for row in retrieval.rows:
        if row.subset != "all":
            slot = subsets.setdefault(row.setting, {}).setdefault(row.mode, {}).setdefault(row.method, {})
            slot[row.subset] = {"queries": row.queries, "metrics": dict(row.metrics)}
            continue
        slot = results.setdefault(row.setting, {}).setdefault(row.mode, {}).setdefault(row.method, {})
        slot[row.relevance] = {
            "queries": row.queries,
            "metrics": dict(row.metrics),
            "by_primary_label": dict(row.by_primary_label),
        }
    short = result.short_queries
    modes: dict[str, Any] = {}
    for status in retrieval.modes:
        modes.setdefault(status.setting, {})[status.mode] = {"queries": status.queries, "note": status.note}
    cls = result.classification
    return {
        "settings": result.settings,
        "data": result.data,
        "checkpoint": result.checkpoint,
        "index": result.index,
        "classification": {
            "studies": cls.studies,
            "min_positives": cls.min_positives,
            "macro_auroc": cls.macro_auroc,
            "macro_average_precision": cls.macro_average_precision,
            "macro_f1": cls.macro_f1,
            "scored": cls.scored,
            "too_few_positives": cls.too_few_positives,
            "thresholds_source": cls.thresholds_source,
            "labels": {r.label: {k: v for k, v in asdict(r).items() if k != "label"} for r in cls.labels},
        },
        "retrieval": {
            "ks": retrieval.ks,
            "pools": {s: {"split": p[0], "studies": p[1]} for s, p in retrieval.pools.items()},
            "unlabelled_queries": retrieval.unlabelled,
            "queries_without_relevant": retrieval.no_relevant,
            "modes": modes,
            "results": results,
            "subsets": subsets,
            "notes": list(retrieval.notes),
        },
        "short_queries": {
            "set": short.version,
            "half": short.half,
            "results": {
                r.method: {"queries": r.queries, "metrics": dict(r.metrics), "by_label": dict(r.by_primary_label)}
                for r in short.rows
                if r.relevance == "strict"
            },
        },
        "crossmodal": {c.method: {k: v for k, v in asdict(c).items() if k != "method"} for c in result.crossmodal},
        "timings": dict(result.timings),
        "machine": dict(result.machine),
    }


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: ``nan``/``None`` -> ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_plot(result: EvaluationResult, path: Path) -> Path:
    """Save the ``P@k`` vs ``k`` plot (strict relevance) as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    retrieval = result.retrieval
    settings = list(retrieval.pools)
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.8), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        lines: dict[tuple[str, tuple[float, ...]], list[str]] = {}  # a baseline drawn once per distinct curve
        for mode in MODES:
            for method in (m for m in METHODS if m in _COLOR):
                row = retrieval.row(setting, mode, method, "strict")
                if row is not None:
                    ys = tuple(row.metrics[f"P@{k}"] for k in retrieval.ks)
                    key = (method, ys) if method in ("bm25", "random") else (f"{method}\0{mode}", ys)
                    lines.setdefault(key, []).append(mode)
        for (method_key, ys), modes in lines.items():
            method = method_key.split("\0")[0]
            names = ", ".join(m.removesuffix("->case") for m in modes)
            ax.plot(
                retrieval.ks,
                ys,
                linestyle=_STYLE[modes[0]],
                marker=_MARK[modes[0]],
                color=_COLOR[method],
                label=f"{method} ({names})",
            )
        split, size = retrieval.pools[setting]
        ax.set_title(f"{setting}: queries from {result.settings['split']} vs {split} ({size} studies)")
        ax.set_xlabel("k")
        ax.set_ylabel("P@k (strict relevance)")
        ax.set_xticks(list(retrieval.ks))
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
        if lines:
            # below the axes: inside, it would hide the best curves, which sit at the top
            ax.legend(
                fontsize=7,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.13),
                ncol=3,
                title="method (query)",
                title_fontsize=7,
            )
    fig.suptitle(
        f"{result.checkpoint['model']} ({result.checkpoint['fingerprint'][:12]}), split {result.settings['split']}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as exc:
        raise ConfigError(f"cannot write the plot: {exc.strerror or exc}", path=path) from None
    finally:
        plt.close(fig)
    return path


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A markdown table; a column is right-aligned when its cells are numbers."""
    rows = [list(row) for row in rows]
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) if rows else False
        for i in range(len(header))
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _kv(rows: Mapping[str, Any]) -> list[str]:
    return _table(["what", "value"], [(k, v if isinstance(v, str) else fmt(v)) for k, v in rows.items()])


def markdown(result: EvaluationResult, plot_name: str | None) -> str:
    """The report text (see the module docstring)."""
    s, d, c, r = result.settings, result.data, result.checkpoint, result.retrieval
    cls = result.classification
    out = [
        f"# cxrsearch evaluation: {c['model']} on the {s['split']} split",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')}. Definitions: docs/evaluation.md.",
        "",
    ]
    out += [f"- **Note:** {note}" for note in s.get("notes", [])] + ["", "## Settings", ""]
    out += _kv(
        {
            "data": d["source"],
            "data fingerprint": d["fingerprint"][:16],
            "images": s["images"] or "(none)",
            "checkpoint": c["path"],
            "model": c["model"],
            "checkpoint fingerprint": c["fingerprint"],
            "trained on data": str(c["data_fingerprint"])[:16],
            "towers frozen in training": str(c["towers_frozen"]),
            "split": s["split"],
            "k": ", ".join(str(k) for k in s["ks"]),
            "primary label": s["primary_label"],
            "min positives per scored label": str(s["min_positives"]),
            "BM25": "bm25s {method}, k1 {k1}, b {b}, stop words {stopwords}, stemmer {stemmer}".format(**s["bm25"]),
            "seeds (random, untrained)": f"{s['random_seed']}, {s['untrained_seed']}",
            "fusion weights": str(s.get("fusion", "-")),
        }
    )
    out += ["## Data", ""]
    out += _kv(
        {
            **{f"{name} studies": str(n) for name, n in d["split_sizes"].items()},
            "all studies": str(d["studies"]),
            f"{s['split']} studies indexed (text or image)": str(d["split_studies_indexed"]),
            "images found": str(d["images_found"]),
            "queries without any label (not queries)": str(r.unlabelled),
            **{f"queries with no relevant study ({k})": str(v) for k, v in r.no_relevant.items()},
        }
    )
    out += [
        "## Classification",
        "",
        f"{cls.studies} studies. F1 uses the thresholds stored in the {cls.thresholds_source}. Macro means over "
        f"the {len(cls.scored)} labels with >= {cls.min_positives} positives: **AUROC {fmt(cls.macro_auroc)}**, "
        f"AP {fmt(cls.macro_average_precision)}, F1 {fmt(cls.macro_f1)}.",
        "",
    ]
    out += _table(
        ["label", "positives", "AUROC", "AP", "F1", "threshold", "in macro"],
        [
            (
                x.label,
                x.positives,
                x.auroc,
                x.average_precision,
                x.f1,
                x.threshold,
                "yes" if x.scored else "no (too few)",
            )
            for x in cls.labels
        ],
    )
    if cls.too_few_positives:
        out += [f"Too few positives (< {cls.min_positives}) to average: {', '.join(cls.too_few_positives)}.", ""]
    keys = [f"{m}@{k}" for m in METRIC_NAMES for k in r.ks] + ["MRR"]
    out += [f"- {note}" for note in r.notes] + ([""] if r.notes else [])
    for setting, (split, size) in r.pools.items():
        out += [f"## Retrieval: {setting} (queries from {s['split']} vs {size} {split} studies)", ""]
        for status in (x for x in r.modes if x.setting == setting and x.note):
            out += [f"- {status.mode}: {status.note}"]
        out += [""]
        for relevance in ("strict", "lenient"):
            rows = [
                (mode, method, row.queries, *[row.metrics[k] for k in keys])
                for mode in MODES
                for method in METHODS
                if (row := r.row(setting, mode, method, relevance)) is not None
            ]
            out += [f"**{relevance}** relevance", ""] + _table(["mode", "method", "queries", *keys], rows)
    top = max(r.ks)
    out += [
        f"## Subsets (strict P@{top})",
        "",
        "`novel`: queries with no word-for-word identical (normalised) report in the pool; "
        "`non-normal`: queries whose labels are not just `normal`.",
        "",
    ]
    for setting in r.pools:
        table = [
            (mode, method, *[(row.queries, row.metrics[f"P@{top}"]) for row in cast("list[RetrievalRow]", found)])
            for mode in MODES
            for method in METHODS
            if all(found := [r.row(setting, mode, method, "strict", sub) for sub in ("all", "novel", "non-normal")])
        ]
        out += [f"**{setting}**", ""] + _table(
            [
                "mode",
                "method",
                "all: queries",
                f"all: P@{top}",
                "novel: queries",
                f"novel: P@{top}",
                "non-normal: queries",
                f"non-normal: P@{top}",
            ],
            [(mode, method, *[v for pair in pairs for v in pair]) for mode, method, *pairs in table],
        )
    sq = result.short_queries
    out += [
        f"## Short queries ({sq.version}, {sq.half} half; every indexed study, no filters)",
        "",
        "A hit is relevant when its MeSH labels hold the query's label.",
        "",
    ]
    out += _table(
        ["method", "queries", *keys],
        [
            (row.method, row.queries, *[row.metrics[k] for k in keys])
            for method in METHODS
            if (row := sq.row(method)) is not None
        ],
    )
    for mode in MODES:
        rows_by_method = {m: r.row("historical", mode, m, "strict") for m in METHODS}
        present = {m: row for m, row in rows_by_method.items() if row is not None}
        if not present:
            continue
        labels = sorted(next(iter(present.values())).by_primary_label)
        out += [f"### historical {mode}: strict P@{top} by the query's primary label", ""]
        out += _table(
            ["primary label", "queries", *present],
            [
                (
                    label,
                    next(iter(present.values())).by_primary_label[label]["queries"],
                    *[row.by_primary_label[label][f"P@{top}"] for row in present.values()],
                )
                for label in labels
            ],
        )
    out += ["## CXR-CLIP Open-I protocol (image <-> report, frontal pairs)", ""]
    for cm in result.crossmodal:
        if cm.note:
            out += [f"- {cm.method}: {cm.note}"]
        else:
            out += [
                f"- {cm.method}: {cm.pairs} pairs; image->report "
                + ", ".join(f"{k} {fmt(v)}" for k, v in cm.image_to_report.items())
                + "; report->image "
                + ", ".join(f"{k} {fmt(v)}" for k, v in cm.report_to_image.items())
                + "; random "
                + ", ".join(f"{k} {fmt(v)}" for k, v in cm.random.items())
            ]
    out += ["", "## Index, time and machine", ""]
    out += _kv(
        {
            f"{m} collection": f"{x['collection']} ({x['points']} points, {x['encoded_now']} encoded now, "
            f"{x['failed']} failed, {x['seconds']} s)"
            for m, x in result.index.items()
        }
    )
    out += _kv({f"{k} (s)": fmt(v, 1) for k, v in result.timings.items()})
    out += _kv({k: str(v) for k, v in result.machine.items()})
    if plot_name:
        out += [f"![P@k against k]({plot_name})", ""]
    return "\n".join(out)


def write_markdown(result: EvaluationResult, path: Path, plot: Path | None) -> Path:
    """Write the report to ``path`` (the plot is linked by its file name, next to the report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_text(markdown(result, plot.name if plot is not None else None) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the report: {exc.strerror or exc}", path=path) from None
    return path
