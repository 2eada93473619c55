"""A checkpoint that never learned from radiographs does not index or search them (its image
vectors and image-side labels would be random, and join every text query through fusion)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.errors import ModelError
from cxrsearch.index import index_studies
from cxrsearch.model.checkpoint import read_checkpoint_info
from cxrsearch.search.query import search
from cxrsearch.search.spec import QuerySpec
from cxrsearch.store.edge import EdgeStore
from tests.search.layout import index_options


def test_the_checkpoints_say_what_they_learned_from(tiny_checkpoint: Path, text_only_checkpoint: Path):
    assert read_checkpoint_info(tiny_checkpoint).trained_modalities == ("image", "text")
    assert read_checkpoint_info(text_only_checkpoint).trained_modalities == ("text",)


def test_indexing_radiographs_with_a_text_only_checkpoint_is_refused(
    text_only_checkpoint, reports_tgz, openi_images, tmp_path
):
    with EdgeStore(tmp_path / "store") as store:
        options = index_options(reports_tgz, openi_images, None, tmp_path / "failures", limit=10)
        with pytest.raises(ModelError, match="needs a checkpoint trained with radiographs.*leave out --images"):
            index_studies(options, store, text_only_checkpoint)
        assert store.list_collections() == []  # refused before anything was written
    result = CliRunner().invoke(
        app,
        [
            "index",
            str(reports_tgz),
            "--model",
            str(text_only_checkpoint),
            "--images",
            str(openi_images),
            "--limit",
            "10",
            "--store",
            str(tmp_path / "store"),
        ],
    )
    assert result.exit_code == 1 and "trained with radiographs" in result.output and "Traceback" not in result.output


def test_searching_by_radiograph_with_a_text_only_checkpoint_is_refused(
    text_only_checkpoint, reports_tgz, images_dir, tmp_path
):
    with EdgeStore(tmp_path / "store") as store:
        index_studies(
            index_options(reports_tgz, None, None, tmp_path / "failures", limit=10), store, text_only_checkpoint
        )
        assert search(QuerySpec(text="enlarged heart", k=3), store, "cases")  # text search works
        with pytest.raises(ModelError, match="searching by radiograph needs a checkpoint trained with radiographs"):
            search(QuerySpec(image=images_dir / "png" / "nih_00000001_000.png", k=3), store, "cases")
