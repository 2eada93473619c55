"""The phantom generator writes a data set the product reads as Open-i: reports, films, views, masks."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cxrsearch.data.openi import load_studies
from cxrsearch.data.pairing import index_images, load_view_table
from cxrsearch.data.phantoms import FINDINGS, METADATA_CSV, load_phantoms, make_phantoms
from cxrsearch.data.splits import split_of
from cxrsearch.errors import ConfigError
from cxrsearch.image.decode import decode_image


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return make_phantoms(tmp_path_factory.mktemp("phantoms") / "set", 40, seed=3, size=96, dicom_fraction=0.5)


def _digest(root) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_films(tmp_path, phantoms):
    again = make_phantoms(tmp_path / "again", 40, seed=3, size=96, dicom_fraction=0.5)
    assert _digest(again.root) == _digest(phantoms.root)
    other = make_phantoms(tmp_path / "other", 40, seed=4, size=96, dicom_fraction=0.5)
    assert _digest(other.root) != _digest(phantoms.root)


def test_reports_parse_with_the_drawn_labels_and_every_split(phantoms):
    studies = {s.uid: s for s in load_studies(phantoms.root)}
    assert set(studies) == {s.uid for s in phantoms.studies}
    for phantom in phantoms.studies:
        study = studies[phantom.uid]
        assert study.split == phantom.split == split_of(phantom.uid)
        assert study.labels == phantom.labels
        assert set(phantom.labels) == ({f.label for f in phantom.findings} or {"normal"})
        assert study.image_ids == (phantom.image_id,)
        assert study.report_text()
    assert phantoms.split_counts() == {"train": 24, "val": 8, "test": 8}
    assert set().union(*(s.labels for s in phantoms.studies)) <= set(FINDINGS) | {"normal"}


def test_negations_are_written_and_not_labelled(phantoms):
    negated = [
        s for s in phantoms.studies if "No pleural effusion." in s.findings_text or "No effusion." in s.findings_text
    ]
    assert negated and all("pleural effusion" not in s.labels for s in negated)


def test_films_pair_decode_and_carry_a_frontal_view(phantoms):
    index = index_images(phantoms.images_dir)
    views = load_view_table(phantoms.root / METADATA_CSV)
    formats = {(s.format, s.photometric) for s in phantoms.studies}
    assert ("dicom", "MONOCHROME1") in formats and ("png", None) in formats
    for phantom in phantoms.studies:
        assert index[phantom.image_id] == phantoms.root / phantom.image
        assert views[phantom.image_id] == "PA"
        decoded = decode_image(phantoms.root / phantom.image)
        assert decoded.pixels.shape == (96, 96)
        lungs = decoded.pixels[30:50, 20:30].mean()  # the right lung field
        spine = decoded.pixels[30:50, 46:50].mean()
        assert lungs < spine, "lungs are dark and bone bright, also for MONOCHROME1 films"


def test_masks_mark_where_the_finding_was_drawn(phantoms):
    reloaded = load_phantoms(phantoms.root)
    assert reloaded.studies == phantoms.studies
    nodules = [(s, f) for s in phantoms.studies for f in s.findings if f.label == "nodule"]
    assert nodules
    for study, finding in nodules:
        mask = phantoms.mask(finding)
        pixels = decode_image(phantoms.root / study.image).pixels
        ring = np.zeros_like(mask)
        y0, x0, y1, x1 = finding.bbox
        ring[max(0, y0 - 4) : y1 + 4, max(0, x0 - 4) : x1 + 4] = True
        ring &= ~mask
        assert 0 < finding.area_share < 0.02
        assert np.percentile(pixels[mask], 90) > np.median(pixels[ring]) + 0.1, "the nodule is brighter than around it"


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        make_phantoms(tmp_path, 10)
    with pytest.raises(ConfigError):
        make_phantoms(tmp_path / "new", 2)
