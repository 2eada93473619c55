"""Indexing real reports + real radiographs: counts, payloads, failures, idempotence, safety checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cxrsearch.data.pairing import load_view_table
from cxrsearch.errors import StoreError
from cxrsearch.index import index_studies
from cxrsearch.progress import ProgressEvent
from cxrsearch.store import load_schema, point_id
from cxrsearch.store.edge import EdgeStore
from tests.search.layout import BAD_IMAGE, DICOM_IMAGES, GOOD_IMAGES, N_REPORTS, index_options

pytestmark = pytest.mark.slow


def _all(indexed) -> list:
    return list(indexed.store.scroll(indexed.collection, with_vectors=True))


def test_one_point_per_image_and_per_report_without_image(indexed):
    report, expected = indexed.report, indexed.expected
    points = _all(indexed)
    assert report.count == len(points) == len(expected)
    assert report.indexed == len(expected) and report.skipped_existing == 0
    assert report.studies == N_REPORTS and report.image_points == len(GOOD_IMAGES) + 1  # + the bad one
    assert sorted(p.id for p in points) == sorted(point_id(indexed.collection, key) for key in expected)
    for point in points:
        payload = point.payload
        key = payload["image_id"] or payload["study_id"]
        study = expected[key]
        assert payload["study_id"] == study.uid and payload["split"] == study.split
        assert payload["labels_true"] == list(study.labels)
        assert payload["findings"] == study.findings and payload["impression"] == study.impression
        assert set(payload["probs"]) >= set(payload["labels"]) and all(0 <= p <= 1 for p in payload["probs"].values())
        assert payload["model"] == "tiny-test" and payload["checkpoint_fingerprint"] == report.fingerprint
        expected_vectors = {"image", "text", "joint"} if payload["image_id"] else {"text", "joint"}
        has_text = bool(study.report_text())
        assert set(point.vectors) == expected_vectors | {"label_probs"} | ({"bm25"} if has_text else set())
        assert all(np.isclose(np.linalg.norm(point.vectors[v]), 1.0, atol=1e-4) for v in expected_vectors)
        # the label vector is the probs payload in the checkpoint's label order (raw: compared by dot product)
        probs = np.array(list(payload["probs"].values()))
        assert np.allclose(point.vectors["label_probs"], probs, atol=1e-4)
        if has_text:
            assert len(point.vectors["bm25"].indices) > 0 and min(point.vectors["bm25"].values) > 0
        assert payload["kind"] == ("image" if payload["image_id"] else "report")
        # report 1's own Open-i PNG is stored as a negative: inverted before encoding, and said so
        assert payload["inverted"] is (payload["image_id"] == "CXR1_1_IM-0001-3001")
    assert report.inverted == 1


def test_views_come_from_dicom_tags_else_the_metadata_table(indexed, real_data):
    table = load_view_table(real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz")
    by_image = {p.payload["image_id"]: p.payload for p in _all(indexed) if p.payload["image_id"]}
    for image_id in DICOM_IMAGES:
        assert (by_image[image_id]["view"], by_image[image_id]["view_source"]) == ("PA", "dicom")
    png = by_image["CXR1_1_IM-0001-3001"]
    assert png["view"] == table.get("CXR1_1_IM-0001-3001") and png["view_source"] == "metadata"
    assert all(p.payload["view"] is None for p in _all(indexed) if p.payload["kind"] == "report")


def test_no_patient_identifiers_from_dicom_headers_are_stored(indexed, images_dir):
    import pydicom

    stored = json.dumps([p.payload for p in _all(indexed)])
    for name in ("RG1_UNCR.dcm", "siim_pneumothorax_chest_pa_jpeg_baseline.dcm"):
        header = pydicom.dcmread(images_dir / "dicom" / name, stop_before_pixels=True)
        for tag in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "AccessionNumber",
            "InstitutionName",
            "StudyInstanceUID",
        ):
            value = str(header.get(tag, "") or "")
            if len(value) >= 4:
                assert value not in stored, f"{tag} of {name} leaked into a payload"


def test_bad_image_is_a_reported_failure_and_the_rest_is_indexed(indexed):
    report = indexed.report
    assert not report.ok and report.failed == 1
    (failure,) = report.failures
    assert failure.kind == "image" and failure.image_id == BAD_IMAGE and "not a DICOM, PNG or JPEG" in failure.error
    lines = [json.loads(line) for line in report.failures_path.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {"kind": "image", "path": failure.path, "error": failure.error, "study_id": "CXR9", "image_id": BAD_IMAGE}
    ]
    assert point_id(indexed.collection, "CXR9_IM-2407-1001") in {p.id for p in _all(indexed)}


def test_reindex_is_idempotent_and_resume_skips_what_is_stored(indexed, reports_tgz, openi_images, real_data, tmp_path):
    metadata = real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz"
    options = index_options(reports_tgz, openi_images, metadata, tmp_path / "failures")
    before = {p.id: p.vectors["joint"] for p in _all(indexed)}
    again = index_studies(options, indexed.store, indexed.checkpoint)
    assert (again.count, again.indexed, again.skipped_existing, again.failed) == (len(before), 0, len(before), 1)
    forced = index_studies(
        index_options(reports_tgz, openi_images, metadata, tmp_path / "f2", reindex=True),
        indexed.store,
        indexed.checkpoint,
    )
    assert (forced.count, forced.indexed, forced.skipped_existing) == (len(before), len(before), 0)
    after = {p.id: p.vectors["joint"] for p in _all(indexed)}
    assert after.keys() == before.keys()
    assert all(np.allclose(after[i], before[i], atol=1e-5) for i in before)  # same checkpoint, same vectors


def test_another_checkpoint_cannot_be_mixed_into_a_collection(indexed, reports_tgz, tmp_path):
    import torch

    from cxrsearch.data.labels import label_names
    from cxrsearch.model.build import create_model
    from cxrsearch.model.checkpoint import save_checkpoint
    from cxrsearch.model.config import get_config

    torch.manual_seed(1)
    other = tmp_path / "other"
    save_checkpoint(other, create_model(get_config("tiny-test"), label_names()), thresholds=[0.5] * len(label_names()))
    options = index_options(reports_tgz, None, None, tmp_path / "failures", limit=20)
    with pytest.raises(StoreError, match="embeddings of two checkpoints cannot be mixed"):
        index_studies(options, indexed.store, other)


def test_vector_size_mismatch_is_a_clear_store_error(tiny_checkpoint, reports_tgz, tmp_path):
    with EdgeStore(tmp_path / "store") as store:
        store.create_collection("cases", load_schema("cases"), 16, 4)
        with pytest.raises(StoreError, match="stores 16-d vectors but checkpoint .* produces 32-d"):
            index_studies(index_options(reports_tgz, None, None, tmp_path / "f", limit=5), store, tiny_checkpoint)


def test_without_images_every_report_with_text_is_one_report_point(tiny_checkpoint, reports_tgz, studies, tmp_path):
    with EdgeStore(tmp_path / "store") as store:
        report = index_studies(index_options(reports_tgz, None, None, tmp_path / "f", limit=60), store, tiny_checkpoint)
        with_text = [s for s in studies[:60] if s.report_text()]
        assert report.ok and report.count == report.planned == len(with_text) == report.report_points
        assert report.empty == 60 - len(with_text)
        assert report.failures_path is None


class _FailingStore(EdgeStore):
    """An embedded store whose ``fail_at``-th upsert (1-based) fails, as a full disk would."""

    def __init__(self, root, fail_at: int) -> None:
        super().__init__(root)
        self.fail_at, self.upserts = fail_at, 0

    def upsert(self, collection, points, batch=256):
        self.upserts += 1
        if self.upserts == self.fail_at:
            raise StoreError("disk full (simulated)", path=collection)
        return super().upsert(collection, points, batch=batch)


def test_progress_follows_the_store_and_a_failed_upsert_stops_the_run(tiny_checkpoint, reports_tgz, tmp_path):
    # Progress must never run ahead of what is stored, and an upsert's error must reach the caller
    # with the earlier batches kept (and the same command then finishes the job).
    calls: list[tuple[int, int | None]] = []
    options = index_options(reports_tgz, None, None, tmp_path / "f", limit=60, batch_size=8)
    with EdgeStore(tmp_path / "ok") as store:

        def progress(event: ProgressEvent) -> None:
            assert (event.stage, event.name) == ("index", "cases")
            calls.append((event.done, event.total))
            assert store.count("cases") >= event.done  # stored before reported

        report = index_studies(options, store, tiny_checkpoint, progress=progress)
    total = report.planned
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) == 1 + -(-total // 8)

    with _FailingStore(tmp_path / "bad", fail_at=3) as store:
        with pytest.raises(StoreError, match="disk full"):
            index_studies(options, store, tiny_checkpoint)
        assert store.count("cases") == 2 * 8  # the two batches stored before the failure are kept
    with EdgeStore(tmp_path / "bad") as store:  # and the same command finishes the job
        again = index_studies(options, store, tiny_checkpoint)
        assert (again.skipped_existing, again.count) == (16, total)


def test_a_collection_held_by_another_process_is_refused_before_any_heavy_work(reports_tgz, tmp_path):
    """The lock is the first thing an index run checks: the checkpoint named here does not even exist,
    and the run still says the collection is in use (not that the checkpoint is missing)."""
    holder = EdgeStore(tmp_path / "store")
    holder.create_collection("cases", load_schema("cases").with_bm25_avg_len(28.0), 16, 4)
    try:
        with EdgeStore(tmp_path / "store") as store, pytest.raises(StoreError, match="in use by another process"):
            index_studies(
                index_options(reports_tgz, None, None, tmp_path / "f", collection="cases"),
                store,
                tmp_path / "no-such-checkpoint",
            )
    finally:
        holder.close()


def test_no_absolute_path_of_this_machine_is_stored_in_a_point(indexed, openi_images, reports_tgz):
    from cxrsearch.index.record import image_file, recorded_model

    stored = json.dumps([p.payload for p in _all(indexed)])
    for local in (str(openi_images), str(reports_tgz.parent), str(indexed.checkpoint.resolve().parent)):
        assert local not in stored  # payloads travel to servers (`collections migrate`)
    roots = indexed.store.roots(indexed.collection)
    assert roots["images"] == str(openi_images) and roots["reports"] == str(reports_tgz.parent)
    for point in _all(indexed):
        payload = point.payload
        assert payload["source"].startswith(f"{reports_tgz.name}:") and payload["checkpoint"] == indexed.checkpoint.name
        if payload["kind"] == "image":
            assert not payload["image_path"].startswith("/")
            assert image_file(payload, roots) == openi_images / payload["image_path"]
    # search without --model still finds the checkpoint: through the roots, not the payload
    assert recorded_model(indexed.store, indexed.collection).checkpoint == str(indexed.checkpoint.resolve())


def test_a_second_run_from_another_images_folder_is_refused(indexed, reports_tgz, openi_images, real_data, tmp_path):
    if indexed.backend != "edge":
        pytest.skip("the roots of a qdrant-client collection live only in its session")
    elsewhere = tmp_path / "moved"
    shutil.copytree(openi_images, elsewhere, symlinks=True)
    options = index_options(
        reports_tgz, elsewhere, real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz", tmp_path / "failures"
    )
    with pytest.raises(StoreError, match="holds radiographs indexed from .*pass --reindex"):
        index_studies(options, indexed.store, indexed.checkpoint)
