"""The package's layers: each subpackage imports only from the layers below it (docs/architecture.md).

Built on the import graph of tests/test_import_graph.py (every import counts: module level, under
``TYPE_CHECKING`` and inside functions). Two subpackages of the same layer may not import each other.
"""

from __future__ import annotations

from tests.test_import_graph import import_graph

LAYERS = (
    (
        "cxrsearch",
        "defaults",
        "errors",
        "files",
        "paths",
        "progress",
    ),  # root: names, errors, user paths, progress events
    ("image", "store"),  # a file -> grey pixels; the Qdrant backends and collection schemas
    ("text",),  # the report text the model and BM25 read (BM25 vectors are the store's SparseVector)
    ("data",),  # Open-i reports, labels, splits, pairing, downloads, phantoms
    ("model",),  # configs, towers, fusion, training, checkpoints, the encoders
    ("index",),  # studies -> points in a collection
    ("search",),  # a query -> hits (the query-mode table)
    ("explain", "evaluate"),  # why a hit matched; how good the search is
    ("serve", "workflows"),  # the web page; multi-step jobs (the demo)
    ("cli",),  # thin commands over all of the above
)
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_subpackage_has_a_layer():
    packages = {_package(module) for module in import_graph()}
    assert packages <= set(LAYER), f"give these a layer in LAYERS: {sorted(packages - set(LAYER))}"


def test_imports_only_go_down_the_layers():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if _package(module) != _package(target) and LAYER.get(_package(target), 99) >= LAYER.get(_package(module), -1)
    )
    assert not wrong, "imports against the layers (docs/architecture.md):\n" + "\n".join(wrong)
