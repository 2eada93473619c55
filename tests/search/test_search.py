"""Search modes, exact filters and errors, on both backends, against the real indexed fixture."""

from __future__ import annotations

import pytest

from cxrsearch.errors import QueryError
from cxrsearch.image.decode import decode_image
from cxrsearch.model.encode import Encoder
from cxrsearch.search import QuerySpec, search
from cxrsearch.store import Filter, point_id
from tests.rankings import assert_matches_oracle, assert_same_ranking
from tests.search.layout import LINKS

pytestmark = pytest.mark.slow

ALL = 1000  # more than the fixture's points: a filtered search then returns every match


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint):
    return Encoder(tiny_checkpoint)


def _ids(hits) -> list[str]:
    return [hit.id for hit in hits]


def _top(ranked, k: int, atol: float = 1e-6) -> set[str]:
    """Ids of the first ``k`` of a full ranking, and of any point tied with the ``k``-th."""
    cut = ranked[min(k, len(ranked)) - 1].score
    return {hit.id for hit in ranked if hit.score >= cut - atol}


def _ranks_like(hits, full_ranking, k: int) -> None:
    """``hits`` are a top-``k`` of the store's full ranking of the same query. Every image of a study
    shares the study's text vector and reports with the same words share one, and the tiny checkpoint's
    cosines sit a few 1e-6 apart: exact and near ties are common here, and their order (and which made
    the cut at the last rank) is not part of what search promises (tests/rankings.py)."""
    assert_matches_oracle(hits, {hit.id: hit.score for hit in full_ranking}, limit=k, atol=1e-6)


def test_text_query_is_hybrid_dense_bm25_and_labels_fused_in_the_engine(indexed, encoder):
    """A text query is one engine query: one prefetch per component of the fusion in use (the default
    here: no fusion.json beside the tiny checkpoint) fused inside Qdrant with the per-query
    coefficients of :func:`fusion_coefficients`; every hit comes from a prefetch, and ``--json``'s
    component scores are those of the same queries. With weights for all four components (the tiny
    checkpoint learned from radiographs, so the image vectors, searched with the text embedding,
    take part) the same holds under RRF and the linear fusion."""
    from cxrsearch.search.modes import (
        DEFAULT_WEIGHTS,
        MODES,
        FusionWeights,
        active_components,
        encode_queries,
        fusion_coefficients,
        fusion_weights,
        run_query,
    )

    text = "The heart is enlarged."
    spec = QuerySpec(text=text, k=8)
    hits = search(spec, indexed.store, indexed.collection, encoder)
    bm25 = indexed.store.collection_info(indexed.collection).schema.bm25
    assert bm25.avg_len is not None and 5 < bm25.avg_len < 100  # measured on the indexed reports
    weights = fusion_weights(encoder)
    assert weights == DEFAULT_WEIGHTS  # trained with radiographs, no fusion.json: the default fusion
    (vectors,) = encode_queries(encoder, "text", [text], bm25=bm25)

    def engine_query(weights, limit=8):
        components = active_components("text", vectors, weights)
        queries = [(c.vector, vectors[c.query]) for c in components]
        coefficients = fusion_coefficients(components, vectors, weights)
        return queries, indexed.store.search_fused(
            indexed.collection, queries, None, limit, weights=coefficients, fusion=weights.fusion
        )

    queries, fused = engine_query(weights)
    weighted = {c.vector for c in MODES["text"].components if DEFAULT_WEIGHTS.of(c.name) > 0}
    assert {name for name, _ in queries} == weighted  # one prefetch per component the default weighs
    assert len(hits) == 8
    assert_same_ranking(hits, fused, atol=1e-6)
    tops = set()  # each fused hit comes from a prefetch: in the top 50 of one of its components (or tied)
    for name, vector in queries:
        tops |= _top(indexed.store.search(indexed.collection, name, vector, None, ALL), 50)
    assert set(_ids(hits)) <= tops
    detailed = search(spec, indexed.store, indexed.collection, encoder, with_components=True)
    active = {c.name: c for c in active_components("text", vectors, weights)}
    for hit in detailed:
        assert set(hit.components) == set(active)
        for name, part in hit.components.items():
            if part["rank"] is None:
                continue
            ranked = indexed.store.search(
                indexed.collection, active[name].vector, vectors[active[name].query], None, 100
            )
            assert part["score"] == pytest.approx(next(h.score for h in ranked if h.id == hit.id), abs=1e-5)
    for fusion in ("rrf", "linear"):
        every = FusionWeights({"text": 0.5, "image": 0.5, "bm25": 0.2, "labels": 1.0}, "test", fusion)
        queries, fused = engine_query(every)
        assert {name for name, _ in queries} == {"image", "text", "bm25", "label_probs"}
        got = run_query(indexed.store, indexed.collection, "text", vectors, None, 8, every)
        assert_same_ranking(got, fused, atol=1e-6)


@pytest.mark.parametrize("name", ["png/CXR4_IM-2050-1001.png", "dicom/2_IM-0652-1001.dcm"])
def test_image_query_searches_image_vectors_png_and_dicom(indexed, encoder, images_dir, name):
    query = images_dir / LINKS[name]
    hits = search(QuerySpec(image=query, k=5), indexed.store, indexed.collection, encoder)
    vector = encoder.encode(images=[decode_image(query)]).image[0]
    _ranks_like(hits, indexed.store.search(indexed.collection, "image", vector, None, ALL), 5)
    assert all(hit.payload["kind"] == "image" for hit in hits)
    key = name.split("/")[1].rsplit(".", 1)[0]
    key = key if key.startswith("CXR") else "CXR" + key
    assert hits[0].id == point_id(indexed.collection, key) and hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_text_and_image_query_searches_joint_vectors(indexed, encoder, images_dir):
    query = images_dir / "png" / "CXR1_1_IM-0001-3001.png"
    hits = search(QuerySpec(text="no acute disease", image=query, k=5), indexed.store, indexed.collection, encoder)
    joint = encoder.encode(images=[decode_image(query)], texts=["no acute disease."]).joint[0]
    _ranks_like(hits, indexed.store.search(indexed.collection, "joint", joint, None, ALL), 5)


@pytest.mark.parametrize("like", ["CXR2", "cxr2", "2", "CXR2_IM-0652-1001", "point-id"])
def test_like_uses_the_stored_joint_vector_and_excludes_its_study(indexed, like):
    stored = indexed.store.retrieve(
        indexed.collection, [point_id(indexed.collection, "CXR2_IM-0652-1001")], with_vectors=True
    )[0]
    like = stored.id if like == "point-id" else like
    hits = search(QuerySpec(like=like, k=6), indexed.store, indexed.collection)
    expected = indexed.store.search(
        indexed.collection, "joint", stored.vectors["joint"], Filter(exclude_study_ids=("CXR2",)), ALL
    )
    _ranks_like(hits, expected, 6)
    assert all(hit.payload["study_id"] != "CXR2" for hit in hits)


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


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            dict(text="x", all_labels=("cardiomegally",)),
            "unknown label 'cardiomegally'; valid labels: airspace disease",
        ),
        (dict(text="x", view="oblique"), "unknown view 'oblique'; valid views: PA, AP, LATERAL"),
        (dict(text="x", split="holdout"), "unknown split 'holdout'; valid splits: train, val, test"),
        (dict(), "nothing to search for"),
        (dict(like="CXR1", text="x"), "cannot be combined"),
        (dict(text="x", k=0), "-k must be an integer from 1"),
        (dict(text="x", all_labels=("normal",), not_labels=("Normal",)), "both required and excluded"),
    ],
)
def test_bad_queries_raise_one_line_query_errors(spec, message):
    with pytest.raises(QueryError, match=message):
        QuerySpec(**spec)


def test_labels_and_views_are_normalised():
    spec = QuerySpec(text="x", all_labels=("Pleural  Effusion", "pleural effusion"), view="lateral", split="TEST")
    assert (spec.all_labels, spec.view, spec.split) == (("pleural effusion",), "LATERAL", "test")


def test_unknown_example_and_foreign_checkpoint_are_refused(indexed, tmp_path):
    import torch

    from cxrsearch.data.labels import label_names
    from cxrsearch.model.build import create_model
    from cxrsearch.model.checkpoint import save_checkpoint
    from cxrsearch.model.config import get_config

    with pytest.raises(QueryError, match="no indexed case 'CXR99999'"):
        search(QuerySpec(like="CXR99999"), indexed.store, indexed.collection)
    torch.manual_seed(2)
    save_checkpoint(
        tmp_path / "other", create_model(get_config("tiny-test"), label_names()), thresholds=[0.5] * len(label_names())
    )
    with pytest.raises(QueryError, match="is not the one collection 'cases' was indexed with"):
        search(QuerySpec(text="effusion"), indexed.store, indexed.collection, tmp_path / "other")


def test_default_checkpoint_is_the_one_recorded_in_the_collection(indexed):
    from cxrsearch.index.record import recorded_model

    assert recorded_model(indexed.store, indexed.collection).checkpoint == str(indexed.checkpoint.resolve())
    spec = QuerySpec(text="clear lungs", k=5)
    # the same loading route both ways (the recorded path, or the same path given): the same hits.
    # (The torch encoder and the numpy text path agree to ~1e-7, but the tiny checkpoint's cosines tie
    # that closely, so a ranking compared across the two may swap near-ties: tests/search/test_fast_path.py.)
    assert_same_ranking(
        search(spec, indexed.store, indexed.collection),
        search(spec, indexed.store, indexed.collection, indexed.checkpoint),
        atol=1e-6,
    )


def test_a_label_the_query_names_only_in_a_negation_is_not_asked_for(encoder):
    """The label head reads a short negated phrase as the finding ("no pleural effusion" -> effusion
    0.94 with the demo model): the query's label vector drops a label named only inside a negation,
    so the label component does not rank effusions first for it."""
    from cxrsearch.search.modes import encode_queries
    from cxrsearch.store.schema import Bm25Spec

    negated, plain = encode_queries(
        encoder, "text", ["no pleural effusion", "pleural effusion"], bm25=Bm25Spec(1.2, 0.75, 20.0)
    )
    column = list(encoder.labels).index("pleural effusion")
    assert negated["label_probs"][column] == 0.0 and plain["label_probs"][column] > 0.0
    assert negated["bm25"] is not None  # the words stay in the BM25 query, negation-marked
