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
from cxrsearch.evaluate.retrieval import METHODS, MODES, RetrievalResult, RetrievalRow

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.evaluate.classification import ClassificationResult
    from cxrsearch.evaluate.crossmodal import CrossModalResult
    from cxrsearch.evaluate.run import EvaluationResult, ShortQueryResult

_COLOR = {"model": "tab:blue", "untrained": "tab:orange", "tfidf-lr": "tab:red", "bm25": "tab:green", "random": "grey"}
"""The methods drawn in the plot (the components alone are in the tables only)."""
_STYLE = {"text->case": "-", "image->case": "--", "image+text->case": "-.", "case->case": ":"}
_MARK = {"text->case": "o", "image->case": "s", "image+text->case": "^", "case->case": "D"}


def result_json(result: EvaluationResult) -> dict[str, Any]:
    """The whole result as nested dicts and lists of numbers and strings, ready for JSON (``nan`` stays a
    float: ``cxrsearch.cli.render.print_json`` writes it as ``null``)."""
    return {
        "settings": result.settings,
        "data": result.data,
        "checkpoint": result.checkpoint,
        "index": result.index,
        "classification": _classification_json(result.classification),
        "retrieval": _retrieval_json(result.retrieval),
        "short_queries": _short_queries_json(result.short_queries),
        "crossmodal": {c.method: {k: v for k, v in asdict(c).items() if k != "method"} for c in result.crossmodal},
        "timings": dict(result.timings),
        "machine": dict(result.machine),
    }


def _classification_json(cls: ClassificationResult) -> dict[str, Any]:
    return {
        "studies": cls.studies,
        "min_positives": cls.min_positives,
        "macro_auroc": cls.macro_auroc,
        "macro_average_precision": cls.macro_average_precision,
        "macro_f1": cls.macro_f1,
        "scored": cls.scored,
        "too_few_positives": cls.too_few_positives,
        "thresholds_source": cls.thresholds_source,
        "labels": {r.label: {k: v for k, v in asdict(r).items() if k != "label"} for r in cls.labels},
    }


def _retrieval_json(retrieval: RetrievalResult) -> dict[str, Any]:
    modes: dict[str, Any] = {}
    for status in retrieval.modes:
        modes.setdefault(status.setting, {})[status.mode] = {"queries": status.queries, "note": status.note}
    return {
        "ks": retrieval.ks,
        "pools": {s: {"split": p[0], "studies": p[1]} for s, p in retrieval.pools.items()},
        "unlabelled_queries": retrieval.unlabelled,
        "queries_without_relevant": retrieval.no_relevant,
        "modes": modes,
        "results": _results_json(retrieval.rows),
        "subsets": _subsets_json(retrieval.rows),
        "notes": list(retrieval.notes),
    }


def _results_json(rows: Iterable[RetrievalRow]) -> dict[str, Any]:
    """``results[setting][mode][method][relevance]``: the rows over all queries."""
    results: dict[str, Any] = {}
    for row in rows:
        if row.subset == "all":
            slot = results.setdefault(row.setting, {}).setdefault(row.mode, {}).setdefault(row.method, {})
            slot[row.relevance] = {
                "queries": row.queries,
                "metrics": dict(row.metrics),
                "by_primary_label": dict(row.by_primary_label),
            }
    return results


def _subsets_json(rows: Iterable[RetrievalRow]) -> dict[str, Any]:
    """``subsets[setting][mode][method][subset]``: the (strict) rows over a subset of the queries."""
    subsets: dict[str, Any] = {}
    for row in rows:
        if row.subset != "all":
            slot = subsets.setdefault(row.setting, {}).setdefault(row.mode, {}).setdefault(row.method, {})
            slot[row.subset] = {"queries": row.queries, "metrics": dict(row.metrics)}
    return subsets


def _short_queries_json(short: ShortQueryResult) -> dict[str, Any]:
    return {
        "set": short.version,
        "half": short.half,
        "results": {
            r.method: {"queries": r.queries, "metrics": dict(r.metrics), "by_label": dict(r.by_primary_label)}
            for r in short.rows
            if r.relevance == "strict"
        },
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

    settings = list(result.retrieval.pools)
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.8), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        _plot_panel(ax, result, setting)
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


def _plot_curves(retrieval: RetrievalResult, setting: str) -> dict[tuple[str, tuple[float, ...]], list[str]]:
    """The strict ``P@k`` curves of one setting: ``(method key, P@k values) -> modes``. A baseline that
    ranks without the query's inputs (bm25, random) is drawn once per distinct curve, naming its modes;
    the other methods once per mode (key ``method\\0mode``)."""
    curves: dict[tuple[str, tuple[float, ...]], list[str]] = {}
    for mode in MODES:
        for method in (m for m in METHODS if m in _COLOR):
            row = retrieval.row(setting, mode, method, "strict")
            if row is not None:
                ys = tuple(row.metrics[f"P@{k}"] for k in retrieval.ks)
                key = (method, ys) if method in ("bm25", "random") else (f"{method}\0{mode}", ys)
                curves.setdefault(key, []).append(mode)
    return curves


def _plot_panel(ax: Any, result: EvaluationResult, setting: str) -> None:
    """One setting's panel: its curves, titled with the pool, the legend below the axes."""
    retrieval = result.retrieval
    curves = _plot_curves(retrieval, setting)
    for (method_key, ys), modes in curves.items():
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
    if curves:
        # below the axes: inside, it would hide the best curves, which sit at the top
        ax.legend(
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.13),
            ncol=3,
            title="method (query)",
            title_fontsize=7,
        )


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
    out = [
        *_title(result),
        *_settings_section(result),
        *_data_section(result),
        *_classification_section(result.classification),
        *_retrieval_sections(result),
        *_subsets_section(result.retrieval),
        *_short_queries_section(result.short_queries, result.retrieval.ks),
        *_primary_label_sections(result.retrieval),
        *_crossmodal_section(result.crossmodal),
        *_run_section(result),
    ]
    if plot_name:
        out += [f"![P@k against k]({plot_name})", ""]
    return "\n".join(out)


def _metric_keys(ks: Sequence[int]) -> list[str]:
    """The metric columns of a retrieval table: each metric at each k, then MRR."""
    return [f"{m}@{k}" for m in METRIC_NAMES for k in ks] + ["MRR"]


def _title(result: EvaluationResult) -> list[str]:
    """The heading, when it was generated, and the run's notes."""
    out = [
        f"# cxrsearch evaluation: {result.checkpoint['model']} on the {result.settings['split']} split",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')}. Definitions: docs/evaluation.md.",
        "",
    ]
    return out + [f"- **Note:** {note}" for note in result.settings.get("notes", [])] + [""]


def _settings_section(result: EvaluationResult) -> list[str]:
    s, d, c = result.settings, result.data, result.checkpoint
    return ["## Settings", ""] + _kv(
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


def _data_section(result: EvaluationResult) -> list[str]:
    s, d, r = result.settings, result.data, result.retrieval
    return ["## Data", ""] + _kv(
        {
            **{f"{name} studies": str(n) for name, n in d["split_sizes"].items()},
            "all studies": str(d["studies"]),
            f"{s['split']} studies indexed (text or image)": str(d["split_studies_indexed"]),
            "images found": str(d["images_found"]),
            "queries without any label (not queries)": str(r.unlabelled),
            **{f"queries with no relevant study ({k})": str(v) for k, v in r.no_relevant.items()},
        }
    )


def _classification_section(cls: ClassificationResult) -> list[str]:
    out = [
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
    return out


def _retrieval_sections(result: EvaluationResult) -> list[str]:
    """The retrieval notes, then per setting the modes that did not run and a table per relevance rule."""
    r = result.retrieval
    keys = _metric_keys(r.ks)
    out = [f"- {note}" for note in r.notes] + ([""] if r.notes else [])
    for setting, (split, size) in r.pools.items():
        out += [f"## Retrieval: {setting} (queries from {result.settings['split']} vs {size} {split} studies)", ""]
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
    return out


def _subsets_section(r: RetrievalResult) -> list[str]:
    """Strict ``P@max(k)`` over all, novel and non-normal queries, one table per setting."""
    top = max(r.ks)
    out = [
        f"## Subsets (strict P@{top})",
        "",
        "`novel`: queries with no word-for-word identical (normalised) report in the pool; "
        "`non-normal`: queries whose labels are not just `normal`.",
        "",
    ]
    header = ["mode", "method"]
    for sub in ("all", "novel", "non-normal"):
        header += [f"{sub}: queries", f"{sub}: P@{top}"]
    for setting in r.pools:
        table = [
            (mode, method, *[(row.queries, row.metrics[f"P@{top}"]) for row in cast("list[RetrievalRow]", found)])
            for mode in MODES
            for method in METHODS
            if all(found := [r.row(setting, mode, method, "strict", sub) for sub in ("all", "novel", "non-normal")])
        ]
        out += [f"**{setting}**", ""] + _table(
            header, [(mode, method, *[v for pair in pairs for v in pair]) for mode, method, *pairs in table]
        )
    return out


def _short_queries_section(sq: ShortQueryResult, ks: Sequence[int]) -> list[str]:
    keys = _metric_keys(ks)
    out = [
        f"## Short queries ({sq.version}, {sq.half} half; every indexed study, no filters)",
        "",
        "A hit is relevant when its MeSH labels hold the query's label.",
        "",
    ]
    return out + _table(
        ["method", "queries", *keys],
        [
            (row.method, row.queries, *[row.metrics[k] for k in keys])
            for method in METHODS
            if (row := sq.row(method)) is not None
        ],
    )


def _primary_label_sections(r: RetrievalResult) -> list[str]:
    """Per mode of the historical setting: strict ``P@max(k)`` of each method by the query's primary label."""
    top = max(r.ks)
    out: list[str] = []
    for mode in MODES:
        rows_by_method = {m: r.row("historical", mode, m, "strict") for m in METHODS}
        present = {m: row for m, row in rows_by_method.items() if row is not None}
        if not present:
            continue
        first = next(iter(present.values()))
        out += [f"### historical {mode}: strict P@{top} by the query's primary label", ""]
        out += _table(
            ["primary label", "queries", *present],
            [
                (
                    label,
                    first.by_primary_label[label]["queries"],
                    *[row.by_primary_label[label][f"P@{top}"] for row in present.values()],
                )
                for label in sorted(first.by_primary_label)
            ],
        )
    return out


def _crossmodal_section(crossmodal: Sequence[CrossModalResult]) -> list[str]:
    out = ["## CXR-CLIP Open-I protocol (image <-> report, frontal pairs)", ""]
    for cm in crossmodal:
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
    return out + [""]


def _run_section(result: EvaluationResult) -> list[str]:
    """The collections searched, the timings and the machine."""
    out = ["## Index, time and machine", ""]
    out += _kv(
        {
            f"{m} collection": f"{x['collection']} ({x['points']} points, {x['encoded_now']} encoded now, "
            f"{x['failed']} failed, {x['seconds']} s)"
            for m, x in result.index.items()
        }
    )
    out += _kv({f"{k} (s)": fmt(v, 1) for k, v in result.timings.items()})
    return out + _kv({k: str(v) for k, v in result.machine.items()})


def write_markdown(result: EvaluationResult, path: Path, plot: Path | None) -> Path:
    """Write the report to ``path`` (the plot is linked by its file name, next to the report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_text(markdown(result, plot.name if plot is not None else None) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the report: {exc.strerror or exc}", path=path) from None
    return path
