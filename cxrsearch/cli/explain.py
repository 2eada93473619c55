"""``cxrsearch explain HIT``: why a hit matched a query, on its radiograph and in its report.

People get the scores, the report with each word coloured by its attribution (green raised the
score, pink lowered it), the top words, heatmap numbers and the PNG paths; scripts get ``--json``
(the same numbers, see :meth:`cxrsearch.explain.explanation.Explanation.to_dict`). torch, captum and
matplotlib are imported only when the command runs. See docs/explain.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from cxrsearch.cli.render import console, err_console, print_json
from cxrsearch.cli.store_options import ApiKey, QdrantUrl, StoreDir, Timeout, opened_store
from cxrsearch.defaults import DEFAULT_COLLECTION


def explain(
    hit: str = typer.Argument(
        ..., metavar="HIT", help="Point id, image id or study id of a hit (from `cxrsearch search`)."
    ),
    text: Optional[str] = typer.Option(None, "--text", metavar="TEXT", help="The text query the hit was found for."),
    image: Optional[Path] = typer.Option(
        None, "--image", metavar="PATH", help="The query radiograph (DICOM, PNG, JPEG)."
    ),
    like: Optional[str] = typer.Option(
        None, "--like", metavar="ID", help="The indexed example case the hit was found for."
    ),
    label: Optional[str] = typer.Option(
        None, "--label", metavar="L", help="Explain why the hit's label L was predicted (no query)."
    ),
    steps: int = typer.Option(
        32, "--steps", metavar="N", help="Integrated Gradients steps (more: smaller convergence delta, slower)."
    ),
    baseline: str = typer.Option(
        "black", "--baseline", metavar="black|blur", help="Pixel baseline: black (empty film) or blur."
    ),
    precision: str = typer.Option(
        "auto",
        "--precision",
        metavar="auto|fp32|bf16",
        help="Attribution arithmetic: bf16 is ~2x faster where the hardware has it (auto picks it there).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="Folder for the PNGs and JSON (default: a new folder under $CXRSEARCH_OUTPUT).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the numbers as JSON instead of a report."),
    model: Optional[Path] = typer.Option(
        None, "--model", metavar="CKPT", help="Checkpoint directory (default: the one the collection was indexed with)."
    ),
    collection: str = typer.Option(
        DEFAULT_COLLECTION, "--collection", metavar="NAME", help="Collection the hit is in."
    ),
    images: Optional[Path] = typer.Option(
        None,
        "--images",
        metavar="DIR",
        help="Folder the hit's radiograph was indexed from, when the store does not record it (a server collection).",
    ),
    html: Optional[Path] = typer.Option(
        None, "--html", metavar="FILE", help="Also write the explanation as a self-contained HTML page."
    ),
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """Explain why HIT matched the query (--text / --image / both / --like), or why its --label was predicted."""
    from cxrsearch.cli.search import serving
    from cxrsearch.explain.explain import explain as explain_hit
    from cxrsearch.explain.output import write_explanation
    from cxrsearch.explain.request import ExplainRequest

    server = serving(store, qdrant_url, collection)
    if server is not None:  # a running `cxrsearch serve` holds the embedded collection: ask it
        _explain_via_server(
            server, hit, text, like, label, image, model, html, steps, baseline, precision, out, json_out
        )
        return
    request = ExplainRequest(
        hit=hit,
        collection=collection,
        text=text,
        image=image,
        like=like,
        label=label,
        steps=steps,
        baseline=baseline,
        out_dir=out,
        precision=precision,
        images=images,
    )
    with opened_store(store, qdrant_url, api_key, timeout) as backend:
        if not json_out:
            err_console.print(f"[dim]explaining {hit} ({steps} Integrated Gradients steps)...[/dim]")
        result = write_explanation(explain_hit(request, backend, model), request)
        if html is not None:
            from cxrsearch.serve.files import collection_image_roots
            from cxrsearch.serve.sheet import write_explain_sheet

            roots = collection_image_roots(backend, collection, () if images is None else (images,))
            err_console.print(f"wrote {write_explain_sheet(html, result, image_roots=roots)}")
    if json_out:
        print_json(result.to_dict())
        return
    _print_report(result)


def _explain_via_server(
    server, hit, text, like, label, image, model, html, steps, baseline, precision, out, json_out
) -> None:
    """``explain`` answered by the running server's ``/api/explain``: the same JSON (its PNGs
    downloaded into ``--out``); options the server does not take are refused in one line."""
    from cxrsearch import paths
    from cxrsearch.errors import ConfigError, QueryError
    from cxrsearch.serve.registry import api_get, fetch_file

    unsent = {
        "--image": image,
        "--model": model,
        "--html": html,
        "--baseline": None if baseline == "black" else 1,
        "--precision": None if precision == "auto" else 1,
    }
    given = [flag for flag, value in unsent.items() if value is not None]
    if given:
        raise ConfigError(
            f"the collection is held by `cxrsearch serve` (pid {server.pid}) at {server.url}: "
            f"{', '.join(given)} is not sent through it; use its page, or stop it first"
        )
    params = [(n, v) for n, v in (("hit", hit), ("text", text), ("like", like), ("label", label)) if v is not None]
    if not json_out:
        err_console.print(f"[dim]explaining {hit} through cxrsearch serve at {server.url}...[/dim]")
    status = api_get(server, "/api/explain", [*params, ("wait", "600")], timeout=660, method="POST")
    if status.get("state") != "done":
        raise QueryError(f"the server's explanation {status.get('state')}: {status.get('error')}", path=server.url)
    data = status["result"]
    used = next((part["steps"] for part in (data.get("pixels"), data.get("tokens")) if part and "steps" in part), steps)
    if used != steps:
        raise ConfigError(
            f"`cxrsearch serve` (pid {server.pid}) explains with {used} steps, not --steps {steps}; "
            "use its value, or stop it first"
        )
    folder = Path(out) if out is not None else paths.output_dir() / f"explain-{status['job']}"
    folder.mkdir(parents=True, exist_ok=True)
    data["files"] = {name: str(fetch_file(server, url, folder / f"{name}.png")) for name, url in data["files"].items()}
    if json_out:
        print_json(data)
        return
    console.print(
        f"[bold]{escape(str(data['hit'].get('image_id') or data['hit'].get('study_id')))}[/bold]: "
        f"{escape(str(data['target']))} = [bold]{data['score']:.4f}[/bold] (via cxrsearch serve)"
    )
    if data.get("top_words"):
        console.print("top words: " + ", ".join(escape(str(w.get("word", w))) for w in data["top_words"][:10]))
    for name, path in data["files"].items():
        console.print(f"{name}: {path}")


def _print_report(result) -> None:
    _print_scores(result)
    for notice in result.notices:
        console.print(f"[yellow]notice:[/yellow] {escape(notice)}")
    if result.pixels is not None:
        _print_pixels(result.pixels, result.pixel_stats)
    if result.attention is not None:
        a = result.attention_stats
        console.print(
            f"[bold]Cross-attention[/bold] (attention, not attribution; rollout over "
            f"{len(result.attention.per_layer)} fusion layers): peak at (y={a.peak[0]}, x={a.peak[1]})"
        )
    if result.tokens is not None:
        _print_tokens(result.tokens, result.top_words())
    if result.fusion is not None:
        _print_fusion(result.fusion)
    if result.files:
        console.print("\n[bold]Files[/bold]")
        for key in ("figure", "ig_overlay", "attention_overlay", "json"):
            if key in result.files:
                console.print(f"  {key:<18} {escape(str(result.files[key]))}", soft_wrap=True)
    console.print(f"[dim]time {result.timing.get('total', 0.0):.1f}s[/dim]")


def _print_scores(result) -> None:
    """The hit, the query, the explained score and the stored vectors' cosines."""
    hit, query = result.hit, result.query
    name = hit.get("image_id") or hit.get("study_id") or hit["id"]
    view = f", {hit['view']}" if hit.get("view") else ""
    console.print(
        f"[bold]{escape(str(name))}[/bold] (study {escape(str(hit.get('study_id')))}{view}, point {hit['id']})"
    )
    console.print(f"query: {escape(_query_words(query))}")
    score = f"{escape(result.target)} = [bold]{result.score:.4f}[/bold]"
    if result.probability is not None:
        score += f" (probability {result.probability:.3f})"
    console.print(score)
    if result.vector_scores:
        stored = ", ".join(f"{k} {v:.4f}" for k, v in result.vector_scores.items())
        console.print(f"[dim]cosine with the hit's stored vectors (what search ranked by): {stored}[/dim]")


def _print_pixels(p, s) -> None:
    """Integrated Gradients on the pixels: completeness and where the map peaks."""
    console.print(
        "\n[bold]Integrated Gradients on pixels[/bold] "
        f"({p.baseline} baseline, {p.steps} steps, {p.precision}, {p.seconds:.1f}s): "
        f"f(hit) {p.score:.4f} - f(baseline) {p.baseline_score:.4f} = {p.score - p.baseline_score:.4f}; "
        f"attributions sum to {p.score - p.baseline_score + p.delta:.4f} (convergence delta {p.delta:+.2e})"
    )
    console.print(
        f"  peak at (y={s.peak[0]}, x={s.peak[1]}) of {s.original_size[0]}x{s.original_size[1]}; "
        f"top 5% of pixels carry {100 * s.top5_share:.0f}% of |attribution|"
    )


def _print_tokens(t, top_words) -> None:
    """The report coloured by token attribution, and the top words."""
    from cxrsearch.explain.render import coloured_report

    console.print(
        f"\n[bold]Report, coloured by attribution[/bold] (green raised the score, pink lowered it; "
        f"{t.steps} steps, {t.precision}, convergence delta {t.delta:+.2e}"
        + (", report truncated" if t.truncated else "")
        + ")"
    )
    console.print(coloured_report(t.text, t.words))
    table = Table(title="Top words", show_lines=False)
    table.add_column("word")
    table.add_column("attribution", justify="right")
    for word in top_words:
        colour = "green" if word.attribution > 0 else "magenta"
        table.add_row(escape(word.word), f"[{colour}]{word.attribution:+.4f}[/{colour}]")
    console.print(table)


def _print_fusion(fusion) -> None:
    """The fused (hybrid) score's parts: each component's rank, score, weight and evidence."""
    console.print(f"\n[bold]Hybrid text query[/bold]: {escape(fusion.headline())}")
    linear = fusion.fusion == "linear"
    table = Table(show_lines=False)
    columns = ("component", "weight", "rank", "score", *(("share",) if linear else ()), "evidence")
    for name in columns:
        table.add_column(name, justify="left" if name in ("component", "evidence") else "right", overflow="fold")
    for row in fusion.rows():
        table.add_row(
            row.component,
            f"{row.weight:g}",
            "-" if row.rank is None else str(row.rank),
            "-" if row.score is None else f"{row.score:.4f}",
            *((("-" if row.share is None else f"{row.share:.4f}"),) if linear else ()),
            escape(row.evidence),
        )
    console.print(table)


def _query_words(query: dict) -> str:
    mode = query["mode"]
    if mode == "label":
        return f"label {query['label']}"
    if mode == "like":
        return f"like {query['like']}"
    parts = []
    if query.get("text"):
        parts.append(f'"{query["text"]}"')
    if query.get("image"):
        parts.append(f"image {query['image']}")
    return " + ".join(parts)
