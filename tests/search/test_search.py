"""Search modes, exact filters and errors, on both backends, against the real indexed fixture."""

from __future__ import annotations

import pytest

from cxrsearch.errors import QueryError
from cxrsearch.image.decode import decode_image
from cxrsearch.model.encode import Encoder
from cxrsearch.search import QuerySpec, search
from cxrsearch.store import Filter, point_id
from tests.search.layout import LINKS

pytestmark = pytest.mark.slow

ALL = 1000  # more than the fixture's points: a filtered search then returns every match


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint):
    return Encoder(tiny_checkpoint)


def _ids(hits) -> list[str]:
    return [hit.id for hit in hits]


def _same_ranking(hits, expected) -> bool:
    """Same scores in the same order and the same ids at each score (ties may come in any order;
    at the lowest score shown, which of the tied points made the cut may differ too)."""
    scores = [round(hit.score, 5) for hit in hits]
    if scores != [round(hit.score, 5) for hit in expected]:
        return False
    last = min(scores, default=None)
    group = lambda hs, s: {h.id for h in hs if round(h.score, 5) == s}  # noqa: E731
    return all(group(hits, s) == group(expected, s) for s in set(scores) if s != last)


def test_text_query_fuses_text_and_cross_modal_image_vectors(indexed, encoder):
    spec = QuerySpec(text="The heart is enlarged.", k=8)
    hits = search(spec, indexed.store, indexed.collection, encoder)
    vector = encoder.encode(texts=["The heart is enlarged."]).text[0]
    fused = indexed.store.search_fused(indexed.collection, [("text", vector), ("image", vector)], None, 8)
    assert _same_ranking(hits, fused) and len(hits) == 8
    text_only = _ids(indexed.store.search(indexed.collection, "text", vector, None, 8))
    image_only = _ids(indexed.store.search(indexed.collection, "image", vector, None, 8))
    assert set(_ids(hits)) <= set(text_only) | set(image_only)


@pytest.mark.parametrize("name", ["png/CXR4_IM-2050-1001.png", "dicom/2_IM-0652-1001.dcm"])
def test_image_query_searches_image_vectors_png_and_dicom(indexed, encoder, images_dir, name):
    query = images_dir / LINKS[name]
    hits = search(QuerySpec(image=query, k=5), indexed.store, indexed.collection, encoder)
    vector = encoder.encode(images=[decode_image(query)]).image[0]
    assert _ids(hits) == _ids(indexed.store.search(indexed.collection, "image", vector, None, 5))
    assert all(hit.payload["kind"] == "image" for hit in hits)
    key = name.split("/")[1].rsplit(".", 1)[0]
    key = key if key.startswith("CXR") else "CXR" + key
    assert hits[0].id == point_id(indexed.collection, key) and hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_text_and_image_query_searches_joint_vectors(indexed, encoder, images_dir):
    query = images_dir / "png" / "CXR1_1_IM-0001-3001.png"
    hits = search(QuerySpec(text="no acute disease", image=query, k=5), indexed.store, indexed.collection, encoder)
    joint = encoder.encode(images=[decode_image(query)], texts=["no acute disease."]).joint[0]
    assert _ids(hits) == _ids(indexed.store.search(indexed.collection, "joint", joint, None, 5))


@pytest.mark.parametrize("like", ["CXR2", "cxr2", "2", "CXR2_IM-0652-1001", "point-id"])
def test_like_uses_the_stored_joint_vector_and_excludes_its_study(indexed, like):
    stored = indexed.store.retrieve(indexed.collection, [point_id(indexed.collection, "CXR2_IM-0652-1001")], with_vectors=True)[0]
    like = stored.id if like == "point-id" else like
    hits = search(QuerySpec(like=like, k=6), indexed.store, indexed.collection)
    expected = indexed.store.search(indexed.collection, "joint", stored.vectors["joint"], Filter(exclude_study_ids=("CXR2",)), 6)
    assert _ids(hits) == _ids(expected) and all(hit.payload["study_id"] != "CXR2" for hit in hits)


def test_like_study_without_image_uses_its_report_point(indexed):
    study = next(s for key, s in indexed.expected.items() if key == s.uid)
    hits = search(QuerySpec(like=study.uid, k=3), indexed.store, indexed.collection)
    assert len(hits) == 3 and all(hit.payload["study_id"] != study.uid for hit in hits)


FILTERS = [
    dict(all_labels=("normal",)),
    dict(not_labels=("normal",)),
    dict(any_labels=("cardiomegaly", "pleural effusion")),
    dict(all_labels=("cardiomegaly",), truth=True),
    dict(any_labels=("lung opacity", "atelectasis"), not_labels=("normal",), truth=True),
    dict(view="PA"),
    dict(split="val"),
    dict(split="train", not_labels=("calcified granuloma",), truth=True),
]


@pytest.mark.parametrize("mode", ["text", "like"])
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_every_hit_satisfies_the_filters_and_nothing_is_missed(indexed, encoder, mode, filters):
    query = dict(text="pleural effusion") if mode == "text" else dict(like="CXR4")
    spec = QuerySpec(k=ALL, **query, **filters)
    hits = search(spec, indexed.store, indexed.collection, encoder)
    flt = spec.filter(exclude_study_ids=("CXR4",) if mode == "like" else ())
    matching = [p for p in indexed.store.scroll(indexed.collection) if flt.matches(p.payload)]
    # every fixture point has a text vector (all its reports have text), so text mode can reach them all
    assert all(flt.matches(hit.payload) for hit in hits)
    assert sorted(_ids(hits)) == sorted(p.id for p in matching)


@pytest.mark.parametrize("label", ["cardiomegaly", "normal", "pleural effusion"])
def test_truth_counts_match_mesh_labels_counted_by_hand(indexed, label):
    by_hand = sum(1 for study in indexed.expected.values() if label in study.labels)
    hits = search(QuerySpec(like="CXR1", all_labels=(label,), truth=True, k=ALL), indexed.store, indexed.collection)
    own = sum(1 for key, study in indexed.expected.items() if study.uid == "CXR1" and label in study.labels)
    assert len(hits) == by_hand - own > 0
    assert indexed.store.count(indexed.collection, Filter(all_labels=(label,), truth=True)) == by_hand


@pytest.mark.parametrize("spec, message", [
    (dict(text="x", all_labels=("cardiomegally",)), "unknown label 'cardiomegally'; valid labels: airspace disease"),
    (dict(text="x", view="oblique"), "unknown view 'oblique'; valid views: PA, AP, LATERAL"),
    (dict(text="x", split="holdout"), "unknown split 'holdout'; valid splits: train, val, test"),
    (dict(), "nothing to search for"),
    (dict(like="CXR1", text="x"), "cannot be combined"),
    (dict(text="x", k=0), "-k must be an integer from 1"),
    (dict(text="x", all_labels=("normal",), not_labels=("Normal",)), "both required and excluded"),
])
def test_bad_queries_raise_one_line_query_errors(spec, message):
    with pytest.raises(QueryError, match=message):
        QuerySpec(**spec)


def test_labels_and_views_are_normalised():
    spec = QuerySpec(text="x", all_labels=("Pleural  Effusion", "pleural effusion"), view="lateral", split="TEST")
    assert (spec.all_labels, spec.view, spec.split) == (("pleural effusion",), "LATERAL", "test")


def test_unknown_example_and_foreign_checkpoint_are_refused(indexed, tmp_path):
    import torch

    from cxrsearch.data.labels import label_names
    from cxrsearch.model.checkpoint import save_checkpoint
    from cxrsearch.model.config import create_model, get_config

    with pytest.raises(QueryError, match="no indexed case 'CXR99999'"):
        search(QuerySpec(like="CXR99999"), indexed.store, indexed.collection)
    torch.manual_seed(2)
    save_checkpoint(tmp_path / "other", create_model(get_config("tiny-test"), label_names()), thresholds=[0.5] * len(label_names()))
    with pytest.raises(QueryError, match="is not the one collection 'cases' was indexed with"):
        search(QuerySpec(text="effusion"), indexed.store, indexed.collection, tmp_path / "other")


def test_default_checkpoint_is_the_one_recorded_in_the_collection(indexed, encoder):
    spec = QuerySpec(text="clear lungs", k=5)
    assert _ids(search(spec, indexed.store, indexed.collection)) == _ids(search(spec, indexed.store, indexed.collection, encoder))
