"""``cxrsearch train``: fit a fusion model on Open-i reports (and images) and save the best checkpoint.

Progress (rich bars, one line per epoch) goes to stderr; the final summary table (or ``--json``)
to stdout. torch is imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cxrsearch.cli.progress import TrainProgress
from cxrsearch.cli.render import console, err_console, print_json


def _export_image_side(checkpoint: Path) -> str | None:
    """Export the image side to ONNX (torch-free image queries) when the checkpoint learned from
    radiographs; the line to show, if any."""
    from cxrsearch.errors import ModelError
    from cxrsearch.model.checkpoint import export_image_side, read_checkpoint_info

    if "image" not in (read_checkpoint_info(checkpoint).trained_modalities or ()):
        return None
    try:
        path = export_image_side(checkpoint)
    except ModelError as exc:
        return f"image queries will run on torch: {exc.message}"
    return f"image queries run without torch (onnxruntime): {path}"


def _summary(result) -> Table:
    table = Table(title="Training finished", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    minutes, seconds = divmod(result.seconds, 60)
    rows = (
        (
            "best epoch",
            f"{result.best_epoch} of {result.last_epoch}" + (" (early stop)" if result.stopped_early else ""),
        ),
        ("val macro AUROC", f"{result.best_val_macro_auroc:.4f}"),
        (
            "studies",
            (
                f"{result.n_train} train ({result.n_train_with_images} with images), "
                f"{result.n_val} val, {result.n_skipped} skipped"
            ),
        ),
        (
            "time",
            f"{int(minutes)}m {seconds:.1f}s"
            + (f" (resumed after epoch {result.resumed_from})" if result.resumed_from is not None else ""),
        ),
        ("checkpoint", str(result.checkpoint)),
    )
    for key, value in rows:
        table.add_row(key, value)
    return table


def train(
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        metavar="DIR_OR_TGZ",
        help="NLMCXR_reports.tgz, a folder of XML reports, or a data folder (default: $CXRSEARCH_DATA).",
    ),
    config: str = typer.Option(
        ..., "--config", metavar="NAME", help="Model config name (see `cxrsearch models list`) or a JSON file."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", metavar="DIR", help="Checkpoint directory (default: $CXRSEARCH_MODELS/<config>)."
    ),
    images: Optional[Path] = typer.Option(
        None,
        "--images",
        metavar="DIR",
        help="Folder of Open-i radiographs to pair with the reports (text-only training without it).",
    ),
    epochs: int = typer.Option(20, "--epochs", help="Maximum number of epochs."),
    batch_size: int = typer.Option(64, "--batch-size", help="Studies per batch."),
    lr: float = typer.Option(
        1e-3, "--lr", help="Learning rate of projections, fusion and heads (towers: --tower-lr-ratio x)."
    ),
    tower_lr_ratio: float = typer.Option(
        0.1,
        "--tower-lr-ratio",
        min=0.0,
        help="Towers' learning rate as a fraction of --lr (1.0 for a randomly "
        "initialised tower that must learn from scratch).",
    ),
    patience: int = typer.Option(4, "--patience", help="Stop after this many epochs without a val improvement."),
    freeze_encoders: bool = typer.Option(
        False, "--freeze-encoders", help="Cache tower outputs once; train only projections, fusion and heads."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run saved in --out."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Random seed (weights init, shuffling, dropout)."),
    text_encoder: Optional[str] = typer.Option(
        None,
        "--text-encoder",
        metavar="PATH",
        help="Load the text tower from this local copy instead of the config's source.",
    ),
    image_encoder: Optional[str] = typer.Option(
        None, "--image-encoder", metavar="PATH|random", help="Load the image tower from this local copy, or 'random'."
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", metavar="N", help="Use only the first N train+val studies (quick runs)."
    ),
    finding_sentences: bool = typer.Option(
        True,
        "--finding-sentences/--no-finding-sentences",
        help="Also train on report sentences that affirm one of the study's labels (short queries read like them).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Train a model: validation every epoch, early stopping, best checkpoint kept, resumable."""
    from cxrsearch import paths
    from cxrsearch.model.train import TrainOptions
    from cxrsearch.model.train import train as run_training

    options = TrainOptions(
        data=paths.data_dir(data),
        config=config,
        out=out if out is not None else paths.models_dir() / Path(config).stem,
        images=images,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        tower_lr_ratio=tower_lr_ratio,
        patience=patience,
        freeze_encoders=freeze_encoders,
        resume=resume,
        device=device,
        seed=seed,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        limit=limit,
        finding_sentences=finding_sentences,
    )
    with TrainProgress() as progress:
        result = run_training(options, progress=progress)
    notice = _export_image_side(result.checkpoint)
    if notice:
        err_console.print(f"[dim]{notice}[/dim]")
    if json_out:
        print_json(result)
    else:
        console.print(_summary(result))
