"""Internal imports sit at module top: a function-local import of a cxrsearch module is allowed only
where it keeps a heavy library off a light path (docs/architecture.md, "Rules").

Outside ``cxrsearch/cli/`` (whose commands import the library lazily so that ``--help`` and each
command load only what they use), a ``from cxrsearch... import`` inside a function must name a module
that imports, at its own module level or through its module-level cxrsearch imports, one of
:data:`HEAVY`. Anything else is hidden structure: move it to the top of the module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cxrsearch

PACKAGE = Path(cxrsearch.__file__).resolve().parent
HEAVY = frozenset(
    {
        "torch", "torchvision", "timm", "transformers", "tokenizers", "safetensors", "captum",
        "onnx", "onnxruntime", "numpy", "scipy", "sklearn", "bm25s", "PIL", "pydicom", "matplotlib",
        "qdrant_client", "qdrant_edge", "fastapi", "starlette", "uvicorn", "jinja2", "httpx",
        "rich", "typer", "pydantic", "platformdirs", "threadpoolctl",
    }
)  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("cxrsearch", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _module_level_imports(module: str) -> tuple[set[str], set[str]]:
    """(cxrsearch modules, third-party top-level packages) imported when ``module`` is imported."""
    internal: set[str] = set()
    external: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    (internal if alias.name.startswith("cxrsearch") else external).add(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("cxrsearch"):
                    internal.update({node.module, *(f"{node.module}.{a.name}" for a in node.names)})
                else:
                    external.add(node.module)
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list) and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(
                        [
                            c
                            for child in children
                            for c in (child.body if isinstance(child, ast.ExceptHandler) else [child])
                        ]
                    )

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8")).body)
    parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    resolved = {r for r in map(_resolve, internal | parents) if r and r != module}
    return resolved, {name.split(".")[0] for name in external}


def _heavy(module: str, seen: frozenset[str] = frozenset()) -> bool:
    internal, external = _module_level_imports(module)
    if external & HEAVY:
        return True
    return any(_heavy(m, seen | {module}) for m in internal - seen - {module})


def test_function_local_cxrsearch_imports_only_defer_heavy_libraries():
    light = []
    for module, path in sorted(MODULES.items()):
        if module.startswith("cxrsearch.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.ImportFrom)
                    and inner.level == 0
                    and (inner.module or "").startswith("cxrsearch")
                ):
                    target = _resolve(inner.module or "")
                    if target and target != module and not _heavy(target):
                        light.append(f"{path.relative_to(PACKAGE.parent)}:{inner.lineno} imports {inner.module}")
    assert not light, "move these imports to the top of their modules (their targets are light):\n" + "\n".join(light)
