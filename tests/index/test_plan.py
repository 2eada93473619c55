"""A prebuilt index plan (``index_studies(..., plan=)``): re-keyed per collection, indexed without
reading the source again, with the same report and points as a run that reads it."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from cxrsearch.data.openi import load_studies
from cxrsearch.errors import ConfigError
from cxrsearch.index import build_plan, index_studies, plan_items
from cxrsearch.store import point_id
from cxrsearch.store.edge import EdgeStore
from tests.search.layout import index_options

pytestmark = pytest.mark.slow


def test_a_plan_is_rekeyed_for_another_collection(reports_tgz):
    plan = plan_items(load_studies(reports_tgz)[:30], "a")
    assert plan.for_collection("a") is plan and not plan.has_images
    other = plan.for_collection("b")
    assert other.collection == "b" and [i.key for i in other.items] == [i.key for i in plan.items]
    assert [i.point_id for i in other.items] == [point_id("b", i.key) for i in plan.items]
    assert (other.studies, other.empty, other.failures) == (plan.studies, plan.empty, plan.failures)


def test_a_prebuilt_plan_indexes_like_reading_the_source(
    tiny_checkpoint, reports_tgz, openi_images, real_data, tmp_path, monkeypatch
):
    metadata = real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz"
    options = index_options(reports_tgz, openi_images, metadata, tmp_path / "f", limit=20, collection="read")
    with EdgeStore(tmp_path / "read") as store:
        read = index_studies(options, store, tiny_checkpoint)
        read_points = {p.id: p.payload for p in store.scroll("read")}
    plan = build_plan(index_options(reports_tgz, openi_images, metadata, tmp_path / "f", limit=20, collection="x"))

    def refuse(*args, **kwargs):
        raise AssertionError("a run given a plan must not read the source again")

    for name in ("cxrsearch.index.run.build_plan", "cxrsearch.index.plan.iter_report_files"):
        monkeypatch.setattr(name, refuse)
    monkeypatch.setattr("cxrsearch.data.pairing.index_images", refuse)
    with EdgeStore(tmp_path / "planned") as store:
        planned = index_studies(options, store, tiny_checkpoint, plan=plan)  # re-keyed for "read"
        planned_points = {p.id: p.payload for p in store.scroll("read")}

    differ = {"seconds", "store", "failures_path"}
    assert {k: v for k, v in asdict(planned).items() if k not in differ} == {
        k: v for k, v in asdict(read).items() if k not in differ
    }
    assert planned.image_points > 0 and planned.failed == 1  # the radiographs, and the undecodable file
    assert planned_points.keys() == read_points.keys()
    assert all(planned_points[i]["image_path"] == read_points[i]["image_path"] for i in read_points)


def test_a_plan_with_radiographs_needs_an_images_folder(tiny_checkpoint, reports_tgz, openi_images, tmp_path):
    plan = build_plan(index_options(reports_tgz, openi_images, None, tmp_path / "f", limit=10))
    assert plan.has_images
    with EdgeStore(tmp_path / "store") as store, pytest.raises(ConfigError, match="no images folder"):
        index_studies(
            index_options(reports_tgz, None, None, tmp_path / "f", limit=10), store, tiny_checkpoint, plan=plan
        )
