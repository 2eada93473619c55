"""``cxrsearch search``: label-filtered search by text, image, both, or an indexed example.

People get a table (rank, score, study, view, predicted labels with probabilities, MeSH labels,
impression); scripts get ``--json``: a list of hits (see :func:`cxrsearch.search.results.hit_record`),
or ``{"hits": [...], "facets": {...}}`` with ``--facets``. Hits with identical report text are shown
once ("+N identical" under the study) unless ``--no-collapse``.
See docs/search.md for how each mode queries the named vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from cxrsearch.cli.render import console, err_console, print_json
from cxrsearch.cli.store_options import ApiKey, QdrantUrl, StoreDir, Timeout, opened_store
from cxrsearch.defaults import DEFAULT_COLLECTION

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.search import QuerySpec


def hits_table(title: str, hits, truth: bool = False) -> Table:
    """Hits as a rich table (``truth``: the label column shows MeSH labels, the filtered field)."""
    from cxrsearch.search.results import labels_with_probs, snippet

    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("study", min_width=13)  # room for "+N identical" on one line
    table.add_column("view")
    table.add_column("predicted labels (prob)", overflow="fold")
    table.add_column("MeSH labels", overflow="fold")
    table.add_column("impression", overflow="fold")
    for rank, hit in enumerate(hits, start=1):
        payload = dict(hit.payload)
        study = payload.get("study_id") or "?"
        if payload.get("image_id"):
            study = f"{study}\n[dim]{payload['image_id']}[/dim]"
        if getattr(hit, "identical", ()):
            study = f"{study}\n[dim]+{len(hit.identical)} identical[/dim]"
        truth_labels = ", ".join(payload.get("labels_true") or []) or "-"
        table.add_row(
            str(rank),
            f"{hit.score:.4f}",
            study,
            payload.get("view") or "-",
            escape(labels_with_probs(payload)),
            escape(truth_labels),
            escape(snippet(payload.get("impression") or payload.get("findings"))),
        )
    if not hits:
        table.caption = "no hits: nothing in the collection passes these filters"
    elif truth:
        table.caption = "filtered on MeSH labels (--truth)"
    return table


def facets_table(counts: dict[str, int], total: int, truth: bool = False) -> Table:
    """Label counts among all cases passing the filters (``--facets``)."""
    field = "MeSH labels" if truth else "predicted labels"
    table = Table(title=f"{field} in all {total:,} matching cases", title_justify="left")
    table.add_column("label", min_width=30)  # the title on one line
    table.add_column("cases", justify="right")
    table.add_column("share", justify="right")
    for name, count in counts.items():
        table.add_row(escape(name), f"{count:,}", f"{count / total:.0%}" if total else "-")
    if not counts:
        table.caption = "no labels among these cases"
    return table


def serving(store: Path | None, qdrant_url: str | None, collection: str):
    """The running ``cxrsearch serve`` (on loopback) holding ``collection`` of the embedded store the
    options name, else ``None`` (a server URL, or nobody serving it)."""
    import os

    from cxrsearch import paths
    from cxrsearch.serve.registry import running_server
    from cxrsearch.store import URL_ENV

    if qdrant_url or (store is None and os.environ.get(URL_ENV)):
        return None
    return running_server(paths.store_dir(store), collection)


def describe(spec) -> str:
    """One line saying what was searched for, and how (for the table title)."""
    what = {
        "text": f"text {spec.text!r}",
        "image": f"image {spec.image}",
        "like": f"cases like {spec.like}",
        "text+image": f"text {spec.text!r} + image {spec.image}",
    }[spec.mode]
    parts = [what]
    field = "MeSH labels" if spec.truth else "labels"
    if spec.all_labels:
        parts.append(f"{field} all of {', '.join(spec.all_labels)}")
    if spec.any_labels:
        parts.append(f"{field} any of {', '.join(spec.any_labels)}")
    if spec.not_labels:
        parts.append(f"{field} none of {', '.join(spec.not_labels)}")
    if spec.view:
        parts.append(f"view {spec.view}")
    if spec.split:
        parts.append(f"split {spec.split}")
    return "; ".join(parts)


def search(
    text: Optional[str] = typer.Option(None, "--text", metavar="TEXT", help='Free-text query, e.g. "enlarged heart".'),
    image: Optional[Path] = typer.Option(
        None, "--image", metavar="PATH", help="Query radiograph (DICOM, PNG or JPEG)."
    ),
    like: Optional[str] = typer.Option(
        None, "--like", metavar="ID", help="Cases like an indexed one: point id, image id or study id (e.g. CXR3029)."
    ),
    label: Optional[List[str]] = typer.Option(
        None, "--label", metavar="L", help="Require this label (repeatable: all must hold)."
    ),
    any_label: Optional[List[str]] = typer.Option(
        None, "--any-label", metavar="L", help="Require at least one of these labels (repeatable)."
    ),
    not_label: Optional[List[str]] = typer.Option(
        None, "--not-label", metavar="L", help="Exclude this label (repeatable)."
    ),
    view: Optional[str] = typer.Option(
        None, "--view", metavar="PA|AP|LATERAL", help="Only radiographs with this view."
    ),
    split: Optional[str] = typer.Option(None, "--split", metavar="train|val|test", help="Only studies of this split."),
    truth: bool = typer.Option(False, "--truth", help="Filter on MeSH-derived labels instead of predicted ones."),
    k: int = typer.Option(10, "-k", metavar="N", help="Number of hits."),
    json_out: bool = typer.Option(
        False,
        "--json",
        help='Print a JSON list of hits instead of a table ({"hits": [...], "facets": {...}} with --facets).',
    ),
    collapse: bool = typer.Option(
        True,
        "--collapse/--no-collapse",
        help='Show hits with identical report text once, with "+N identical" (--no-collapse: every hit).',
    ),
    diverse: Optional[float] = typer.Option(
        None,
        "--diverse",
        metavar="D",
        min=0.0,
        max=1.0,
        help="Diversify the hits (MMR): 0 = plain order, 1 = most diverse; image, text+image and --like queries.",
    ),
    facets: bool = typer.Option(
        False, "--facets", help="Also count labels (MeSH labels with --truth) among all cases passing the filters."
    ),
    html: Optional[Path] = typer.Option(
        None,
        "--html",
        metavar="FILE",
        help="Also write the hits as a self-contained HTML page (thumbnails embedded), e.g. a teaching set.",
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", metavar="CKPT", help="Checkpoint directory (default: the one the collection was indexed with)."
    ),
    collection: str = typer.Option(DEFAULT_COLLECTION, "--collection", metavar="NAME", help="Collection to search."),
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """Search indexed cases by --text, --image, both, or --like ID, with label/view/split filters.

    No hit ever violates the filters: they are applied inside Qdrant and checked again on every hit.
    """
    request = _Request(
        text=text,
        image=image,
        like=like,
        labels=tuple(label or ()),
        any_labels=tuple(any_label or ()),
        not_labels=tuple(not_label or ()),
        view=view,
        split=split,
        truth=truth,
        k=k,
        json_out=json_out,
        collapse=collapse,
        diverse=diverse,
        facets=facets,
        html=html,
        model=model,
        collection=collection,
    )
    server = serving(store, qdrant_url, collection)
    if server is not None:  # a running `cxrsearch serve` holds the embedded collection: ask it
        _search_via_server(request, server)
        return
    with opened_store(store, qdrant_url, api_key, timeout) as backend:
        found = _search_store(request, backend)
    _show(request, found)


@dataclass(frozen=True)
class _Request:
    """What ``search`` was asked: the options its steps pass along."""

    text: str | None
    image: Path | None
    like: str | None
    labels: tuple[str, ...]
    any_labels: tuple[str, ...]
    not_labels: tuple[str, ...]
    view: str | None
    split: str | None
    truth: bool
    k: int
    json_out: bool
    collapse: bool
    diverse: float | None
    facets: bool
    html: Path | None
    model: Path | None
    collection: str

    @property
    def any_label_filter(self) -> bool:
        return bool(self.labels or self.any_labels or self.not_labels)

    def spec(self, vocabulary: tuple[str, ...] | None) -> QuerySpec:
        """The query, its label filters checked against ``vocabulary`` (``None``: not checked)."""
        from cxrsearch.search import QuerySpec

        return QuerySpec(
            text=self.text,
            image=self.image,
            like=self.like,
            all_labels=self.labels,
            any_labels=self.any_labels,
            not_labels=self.not_labels,
            view=self.view,
            split=self.split,
            truth=self.truth,
            k=self.k,
            vocabulary=vocabulary,
        )


@dataclass(frozen=True)
class _Found:
    """What ``search`` found in the store: the hits (more than ``k`` when collapsing), the
    label counts (``--facets``), the number of matching cases and the images roots (``--html``)."""

    spec: QuerySpec
    hits: list[Any]
    counts: dict[str, int] | None
    total: int
    roots: list[Path] | None


def _search_via_server(request: _Request, server: Any) -> None:
    """Send the search to the running ``cxrsearch serve`` and show its answer."""
    from cxrsearch.errors import ConfigError
    from cxrsearch.serve.params import SearchParams
    from cxrsearch.serve.registry import api_search

    if request.html is not None or request.model is not None:
        given = "--html" if request.html is not None else "--model"
        raise ConfigError(
            f"collection {request.collection!r} is held by `cxrsearch serve` (pid {server.pid}) at "
            f"{server.url}: {given} is not sent through it; use its page, or stop it first"
        )
    sent = SearchParams(
        text=request.text,
        like=request.like,
        label=request.labels,
        any_label=request.any_labels,
        not_label=request.not_labels,
        view=request.view,
        split=request.split,
        truth=request.truth,
        k=request.k,
        collapse=request.collapse,
        diverse=request.diverse,
        facets=request.facets,
    ).items()  # the page's own query-string form
    # a film goes as an upload, through the server's own decoder and guards
    answer, notices = api_search(server, sent, request.image)
    _print_notices(notices)
    if request.json_out:
        print_json(answer)
        return
    records = answer["hits"] if isinstance(answer, dict) else answer
    rows = [SimpleNamespace(payload=r, score=r["score"], identical=r.get("identical") or ()) for r in records]
    # for the title only: the server checked the labels
    spec = request.spec(request.labels + request.any_labels + request.not_labels)
    title = describe(spec) + f" (via cxrsearch serve at {server.url})"
    console.print(hits_table(title, rows, truth=request.truth))
    if isinstance(answer, dict) and answer.get("facets") is not None:
        console.print(facets_table(answer["facets"], 0, truth=request.truth))


def _print_notices(notices: list[str]) -> None:
    """What the user should know about the collection searched, on stderr (``--json`` stays clean)."""
    for notice in notices:
        err_console.print(f"[yellow]notice:[/yellow] {escape(notice)}")


def _search_store(request: _Request, backend: Any) -> _Found:
    """Run the search (and the facet counts) against the opened store."""

    from cxrsearch.search.query import collection_notices, query_encoder, reading_notices, search_to_show
    from cxrsearch.search.query import facets as count_labels
    from cxrsearch.search.vocabulary import collection_labels

    collection = request.collection
    # label filters are checked against the collection's own vocabulary (its checkpoint's)
    spec = request.spec(collection_labels(backend, collection) if request.any_label_filter else None)
    checkpoint = query_encoder(spec, backend, collection, request.model)  # one load for search and notices
    hits = search_to_show(
        spec, backend, collection, checkpoint, request.collapse, request.diverse, with_components=request.json_out
    )
    _print_notices(
        collection_notices(spec, backend, collection) + reading_notices(spec, backend, collection, checkpoint)
    )
    counts = count_labels(spec, backend, collection) if request.facets else None
    counted = request.facets and (request.html is not None or not request.json_out)
    total = backend.count(collection, spec.filter()) if counted else 0
    roots = None
    if request.html is not None:
        from cxrsearch.serve.files import collection_image_roots

        roots = collection_image_roots(backend, collection)
    return _Found(spec, list(hits), counts, total, roots)


def _show(request: _Request, found: _Found) -> None:
    """Collapse the hits, write the ``--html`` sheet, print the table (or ``--json``)."""
    from cxrsearch.search import hit_record
    from cxrsearch.search.collapse import collapse as collapse_hits
    from cxrsearch.search.collapse import uncollapsed

    spec, counts = found.spec, found.counts
    shown = collapse_hits(found.hits, spec.k) if request.collapse else uncollapsed(found.hits)
    if request.html is not None:
        from cxrsearch.serve.sheet import write_search_sheet

        written = write_search_sheet(
            request.html, shown, describe(spec), image_roots=found.roots, facets=counts, total=found.total
        )
        err_console.print(f"wrote {written}")
    if request.json_out:
        records = [hit_record(hit, rank) for rank, hit in enumerate(shown, start=1)]
        print_json(records if counts is None else {"hits": records, "facets": counts})
        return
    title = describe(spec) + (f"; diversity {request.diverse:g}" if request.diverse is not None else "")
    console.print(hits_table(title, shown, truth=spec.truth))
    if counts is not None:
        console.print(facets_table(counts, found.total, truth=spec.truth))
