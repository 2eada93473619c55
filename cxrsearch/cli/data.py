"""``cxrsearch data``: download, summarise (``info``) and look inside (``inspect``) Open-i data.

Library imports happen inside the commands, so ``cxrsearch --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from cxrsearch.cli.data_download import download_command
from cxrsearch.cli.render import console, print_json, to_jsonable

app = typer.Typer(
    help="Open-i data: download it, summarise it, inspect one report or image.",
    no_args_is_help=True,
)
app.command("download")(download_command)


@app.command("info")
def info_command(
    source: Optional[Path] = typer.Argument(
        None,
        metavar="[DIR_OR_TGZ]",
        help="NLMCXR_reports.tgz, a folder of XML reports, or a data folder holding either "
        "(default: $CXRSEARCH_DATA, else the user data dir).",
        show_default=False,
    ),
    images: Optional[Path] = typer.Option(
        None,
        "--images",
        help="Folder of Open-i images to pair with the reports (default: <data folder>/images if present).",
    ),
    metadata: Optional[Path] = typer.Option(
        None, "--metadata", help="Open-i DICOM metadata table (nlmcxr_dicom_metadata.csv.gz) for view counts."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Count reports, image references, images found, labels and split sizes."""
    from cxrsearch.data.info import dataset_info, find_companions
    from cxrsearch.workflows.data import find_data

    if source is None:  # the data folder: its located reports, with their companions
        found = find_data(download=False, hint="DIR_OR_TGZ")
        source, found_images, found_metadata = found.reports, found.images, found.metadata
    else:  # as given: dataset_info locates the reports (and says what is wrong)
        found_images, found_metadata = find_companions(source)
    info = dataset_info(source, images_dir=images or found_images, metadata=metadata or found_metadata)
    if json_out:
        print_json(info)
        return
    console.print(_summary_table(info))
    console.print(_labels_table(info))


def _summary_table(info) -> Table:
    """The counts of ``data info`` (a :class:`~cxrsearch.data.info.DatasetInfo`)."""
    summary = Table(title="Open-i dataset", show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value", overflow="fold")
    summary.add_row("source", info.source)
    summary.add_row("reports", f"{info.reports:,}")
    summary.add_row("image references", f"{info.image_refs:,}")
    summary.add_row("reports without images", f"{info.reports_without_images:,}")
    summary.add_row("reports without labels", f"{info.unlabelled:,}")
    summary.add_row("images folder", info.images_dir or "(none given: --images DIR)")
    if info.images_found is not None:
        summary.add_row("images found", f"{info.images_found:,} of {info.image_refs:,}")
    summary.add_row("splits", ", ".join(f"{name} {count:,}" for name, count in info.splits.items()))
    if info.views is not None:
        summary.add_row("views", ", ".join(f"{name} {count:,}" for name, count in info.views.items()))
    if info.monochrome1:
        summary.add_row(
            "MONOCHROME1 sources",
            f"{info.monochrome1:,} of {info.image_refs:,} images (their PNGs may be "
            "stored as negatives: decoding inverts those, see docs/images.md)",
        )
    return summary


def _labels_table(info) -> Table:
    labels = Table(title="Labels (from MeSH major terms; see docs/labels.md)")
    labels.add_column("label")
    labels.add_column("reports", justify="right")
    labels.add_column("%", justify="right")
    for name, count in info.labels.items():
        labels.add_row(name, f"{count:,}", f"{100 * count / info.reports:.1f}")
    return labels


def _key_value_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value) if value else "-"
        table.add_row(key, "-" if value is None else str(value))
    return table


def _inspect_report(file: Path, json_out: bool) -> None:
    from cxrsearch.data.openi import load_studies

    study = load_studies(file)[0]
    facts = {"kind": "report", **to_jsonable(study), "report_text": study.report_text()}
    if json_out:
        print_json(facts)
    else:
        console.print(_key_value_table(f"Open-i report {study.uid}", facts), highlight=False)


def _inspect_image(file: Path, metadata: Path | None, json_out: bool, as_stored: bool) -> None:
    from cxrsearch.image.decode import decode_image

    image = decode_image(file, fix_negatives=not as_stored)
    facts = image.summary()
    facts["view_source"] = "dicom" if image.view is not None else None
    if image.view is None and metadata is not None:
        from cxrsearch.data.pairing import image_id_from_filename, load_view_table

        image_id = image_id_from_filename(file)
        view = load_view_table(metadata).get(image_id) if image_id is not None else None
        if view is not None:
            facts["view"], facts["view_source"] = view, "metadata"
    if json_out:
        print_json(facts)
    else:
        rows = {**facts, "shape": f"{image.height} x {image.width} (rows x columns)"}
        console.print(_key_value_table(f"Image {file.name}", rows), highlight=False)


@app.command("inspect")
def inspect_command(
    file: Path = typer.Argument(..., metavar="FILE", help="An image (DICOM, PNG, JPEG) or an Open-i XML report."),
    metadata: Optional[Path] = typer.Option(
        None,
        "--metadata",
        help="Open-i DICOM metadata table: the view of an Open-i-named image without a ViewPosition tag.",
    ),
    as_stored: bool = typer.Option(
        False, "--as-stored", help="Do not invert a PNG/JPEG stored as a negative (show the file as it is)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Decode one image (or parse one report) and show what was found.

    The kind is decided by content: XML is parsed as a report, anything else goes to the image decoder.
    """
    from cxrsearch.data.openi import looks_like_xml
    from cxrsearch.errors import ConfigError

    if not file.exists():
        raise ConfigError("not found", path=file)
    if not file.is_file():
        raise ConfigError("not a file; expected an image or an XML report", path=file)
    if looks_like_xml(file):
        _inspect_report(file, json_out)
    else:
        _inspect_image(file, metadata, json_out, as_stored)
