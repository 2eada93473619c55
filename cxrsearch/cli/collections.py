"""``cxrsearch collections``: list, inspect, create, drop and migrate collections of cases.

Library imports happen inside the commands, so ``cxrsearch --help`` stays fast.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import typer
from rich.table import Table

from cxrsearch.cli.render import console, err_console, print_json
from cxrsearch.cli.store_options import ApiKey, QdrantUrl, StoreDir, Timeout, opened_store
from cxrsearch.defaults import DEFAULT_SCHEMA

OPENI_AVG_LEN = 28.0
"""Mean BM25 length (tokens without stopwords) of the 3,955 Open-i reports, measured with
:func:`cxrsearch.text.bm25.average_length`."""

app = typer.Typer(
    help="Collections of indexed cases: list, info, create, drop, migrate to a Qdrant server.",
    no_args_is_help=True,
)

JSON_HELP = "Print JSON instead of a table."


@app.command("list")
def list_command(
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List the collections with their point counts, vector sizes and schemas."""
    from cxrsearch.errors import StoreError

    rows: list[dict[str, Any]] = []
    with opened_store(store, qdrant_url, api_key, timeout) as st:
        location = st.location
        for name in st.list_collections():
            try:
                info = st.collection_info(name)
            except StoreError as exc:  # e.g. open in another process: still list it
                info = _served_info(st, name)  # ...through the `cxrsearch serve` holding it, if one does
                if info is None:
                    rows.append(
                        {"name": name, "points": None, "vector_sizes": None, "schema": None, "error": exc.message}
                    )
                    continue
            rows.append(
                {
                    "name": name,
                    "points": info.points_count,
                    "vector_sizes": info.vector_sizes,
                    "schema": info.schema.name,
                    "error": None,
                }
            )
    if json_out:
        print_json({"location": location, "collections": rows})
        return
    if not rows:
        console.print(
            f"No collections in {location}. Create one with `cxrsearch index` or `cxrsearch collections create`."
        )
        return
    table = Table(title=f"Collections in {location}")
    for column in ("name", "points", "vector size", "schema", "note"):
        table.add_column(column, justify="right" if column == "points" else "left")
    for row in rows:
        sizes = sorted(set((row["vector_sizes"] or {}).values()))
        table.add_row(
            row["name"],
            "?" if row["points"] is None else f"{row['points']:,}",
            ", ".join(map(str, sizes)) or "?",
            row["schema"] or "?",
            row["error"] or "",
        )
    console.print(table)


def _served_info(st: Any, name: str) -> Any:
    """The :class:`CollectionInfo` of an embedded collection held by a running ``cxrsearch serve``:
    its layout from ``collection.json``, its point count from the server (``None``: nobody serves it)."""
    from cxrsearch.serve.registry import api_get, running_server
    from cxrsearch.store.base import CollectionInfo
    from cxrsearch.store.edge import EdgeStore

    server = running_server(st.root, name) if isinstance(st, EdgeStore) else None
    if server is None:
        return None
    schema, sizes = st.layout(name)
    points = int(api_get(server, "/api/info", [])["points"])
    where = f"{st.root / name} (served by `cxrsearch serve`, pid {server.pid}, at {server.url})"
    return CollectionInfo(name=name, points_count=points, vector_sizes=sizes, schema=schema, location=where)


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="Collection name."),
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show one collection: points, vector sizes, index and quantisation settings, payload indexes."""
    from cxrsearch.errors import StoreError

    with opened_store(store, qdrant_url, api_key, timeout) as st:
        try:
            info = st.collection_info(name)
        except StoreError:
            served = _served_info(st, name)  # held by a running `cxrsearch serve`: ask it
            if served is None:
                raise
            info = served
    if json_out:
        print_json(info)
        return
    schema = info.schema
    table = Table(title=f"Collection {name}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("location", info.location)
    table.add_row("points", f"{info.points_count:,}")
    table.add_row(
        "vectors", ", ".join(f"{v} ({info.vector_sizes.get(v, '?')}-d {d})" for v, d in schema.vectors.items())
    )
    table.add_row("schema", f"{schema.name}: {schema.description}")
    graph = (
        "none (quantised/exact scan)"
        if schema.hnsw.m == 0
        else f"HNSW m={schema.hnsw.m} payload_m={schema.hnsw.payload_m}"
    )
    table.add_row("index", f"{graph}, ef={schema.hnsw.ef}")
    quant = schema.quantization
    table.add_row(
        "quantisation",
        "none"
        if quant is None
        else f"{quant.type}, rescore={'yes' if quant.rescore else 'no'}, oversampling {quant.oversampling:g}",
    )
    table.add_row("payload indexes", ", ".join(f"{f} ({k})" for f, k in schema.payload_indexes.items()))
    console.print(table)


@app.command("verify")
def verify_command(
    name: str = typer.Argument(..., help="Collection name."),
    deep: bool = typer.Option(
        False,
        "--deep",
        help="Also read every point: vectors finite, of the right size and "
        "unit length, ids equal to their keys, payload field types.",
    ),
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check a collection against the integrity record of its last clean write; exit 1 if anything is off."""
    from cxrsearch.store.integrity import verify_collection

    with (
        opened_store(store, qdrant_url, api_key, timeout) as st,
        err_console.status(f"verifying {name}" + (" (every point)" if deep else ""), spinner="dots"),
    ):
        report = verify_collection(st, name, deep=deep)
    if json_out:
        print_json(
            {
                "collection": report.collection,
                "location": report.location,
                "ok": report.ok,
                "points": report.points,
                "vectors": report.vectors,
                "record": None if report.record is None else report.record.to_dict(),
                "deep": report.deep,
                "checked": report.checked,
                "problems": report.problems,
            }
        )
    else:
        recorded = "no record" if report.record is None else f"{report.record.points:,} at {report.record.written}"
        console.print(
            f"Collection [bold]{name}[/] ({report.location}): {report.points:,} points (recorded: {recorded})"
        )
        for line in report.checked:
            console.print(f"  checked: {line}")
        for line in report.problems:
            console.print(f"  [red]problem[/]: {line}")
        console.print("[green]OK[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]")
    if not report.ok:
        raise typer.Exit(1)


@app.command("create")
def create_command(
    name: str = typer.Argument(..., help="Collection name."),
    dim: int = typer.Option(..., "--dim", min=1, help="Vector size (the model checkpoint's embedding size)."),
    schema: str = typer.Option(
        DEFAULT_SCHEMA, "--schema", help="Schema name in collections/ or a path to a .json file."
    ),
    labels: Optional[int] = typer.Option(
        None,
        "--labels",
        min=1,
        help="Label count of the checkpoint (label_probs size); default: the packaged vocabulary's.",
    ),
    bm25_avg_len: float = typer.Option(
        OPENI_AVG_LEN,
        "--bm25-avg-len",
        min=1.0,
        help="Mean report length in tokens for BM25 when the schema leaves it to the "
        "corpus (`cxrsearch index` measures it; the default is Open-i's).",
    ),
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create a collection (idempotent: an existing one with the same schema and size is kept)."""
    from cxrsearch.data.labels import label_names
    from cxrsearch.store import load_schema

    layout = load_schema(schema).with_bm25_avg_len(bm25_avg_len)
    with opened_store(store, qdrant_url, api_key, timeout) as st:
        created = st.create_collection(name, layout, dim, labels if labels is not None else len(label_names()))
        kept = st.collection_info(name).schema.name  # an existing collection keeps its own schema
        location = st.location
    if json_out:
        print_json({"name": name, "created": created, "schema": kept, "dim": dim, "location": location})
    elif created:
        console.print(f"Created collection [bold]{name}[/] ({kept}, {dim}-d) in {location}")
    else:
        note = "" if kept == layout.name else f"; it keeps its schema, not {layout.name}"
        console.print(f"Collection [bold]{name}[/] already exists ({kept}, {dim}-d) in {location}{note}")


@app.command("drop")
def drop_command(
    name: str = typer.Argument(..., help="Collection name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Delete a collection and all its points (asks first unless --yes)."""
    with opened_store(store, qdrant_url, api_key, timeout) as st:
        info = st.collection_info(name, check=False)  # a damaged collection can be dropped and rebuilt
        if not yes:
            typer.confirm(f"Drop collection {name!r} ({info.points_count:,} points) from {st.location}?", abort=True)
        st.drop_collection(name)
    if json_out:
        print_json({"name": name, "dropped": True, "points": info.points_count})
    else:
        console.print(f"Dropped collection [bold]{name}[/] ({info.points_count:,} points)")


@app.command("migrate")
def migrate_command(
    name: str = typer.Argument(..., help="Collection in the embedded store to copy."),
    to_url: str = typer.Option(..., "--to-url", metavar="URL", help="Qdrant server to copy it to."),
    to_api_key: Optional[str] = typer.Option(
        None,
        "--to-api-key",
        metavar="KEY",
        show_default=False,
        help="API key of that server (default: $CXRSEARCH_QDRANT_API_KEY).",
    ),
    to_collection: Optional[str] = typer.Option(None, "--to-collection", help="Name on the server (default: NAME)."),
    batch: int = typer.Option(256, "--batch-size", min=1, help="Points per upsert."),
    store: StoreDir = None,
    timeout: Timeout = None,
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Copy a collection from the embedded store to a Qdrant server (idempotent; verifies the count)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cxrsearch.store import API_KEY_ENV, server_timeout
    from cxrsearch.store.client import ClientStore
    from cxrsearch.store.migrate import migrate_collection

    key = to_api_key or os.environ.get(API_KEY_ENV)
    limit = timeout if timeout is not None else server_timeout()
    with opened_store(store) as source, ClientStore.connect(to_url, key, timeout=limit) as target:
        columns = (TextColumn("copying {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err_console, transient=True, disable=json_out) as progress:
            task = progress.add_task(name, total=None)
            result = migrate_collection(
                source,
                target,
                name,
                target_collection=to_collection,
                batch=batch,
                progress=lambda event: progress.update(task, completed=event.done, total=event.total),
            )
    if json_out:
        print_json(result)
    else:
        console.print(
            f"Copied {result.copied:,} points of [bold]{name}[/] to {result.target}; both hold {result.points:,} points"
        )
