"""The fusion table ``cxrsearch explain`` and the web page both show: what the fused score was made of."""

from __future__ import annotations

import pytest

from cxrsearch.explain.fusion import FusionEvidence, FusionRow, label_contributions

LABELS = ("cardiomegaly", "pleural effusion", "normal")


def _linear() -> FusionEvidence:
    return FusionEvidence(
        rank=3,
        score=0.6,
        weights_source="fusion.json",
        fusion="linear",
        components={
            "labels": {
                "weight": 1.0,
                "rank": 2,
                "score": 0.9,
                "coefficient": 0.5,
                "share": 0.45,
                "evidence": [
                    {"label": "cardiomegaly", "query_prob": 0.9, "hit_prob": 0.95, "share": 0.855},
                    {"label": "normal", "query_prob": 0.05, "hit_prob": None, "share": 0.0},
                ],
            },
            "bm25": {
                "weight": 0.1,
                "rank": None,
                "score": None,
                "coefficient": 0.02,
                "share": None,
                "evidence": {"matched": [], "missing": ["enlarged", "heart"]},
            },
        },
    )


def test_rows_carry_each_component_s_numbers_and_evidence_in_words() -> None:
    rows = _linear().rows()
    assert [r.component for r in rows] == ["labels", "bm25"]
    labels, bm25 = rows
    assert labels == FusionRow(
        "labels", 1.0, 2, 0.9, 0.45, "cardiomegaly (query 0.90, hit 0.95), normal (query 0.05, hit 0.00)"
    )
    assert bm25.rank is None and bm25.score is None and bm25.share is None
    assert bm25.evidence == "matched: none; not in the report: enlarged, heart"


def test_the_headline_says_how_the_score_is_made_and_what_the_attributions_explain() -> None:
    line = _linear().headline()
    assert "rank 3, fused score 0.6000" in line and "share = coefficient x score" in line
    assert "labels part" in line and "fusion.json" in line
    below = FusionEvidence(None, None, "default", {"text": {"weight": 1.0, "rank": 7, "score": 0.5}}, "rrf")
    assert "below rank" in below.headline() and "weighted RRF" in below.headline()
    assert "dense part" in below.headline()
    assert below.rows()[0].share is None and below.rows()[0].evidence == "token and pixel attributions"


def test_label_contributions_rank_labels_by_their_part_of_the_dot_product() -> None:
    out = label_contributions([0.9, 0.1, 0.0], [0.5, 0.8, 0.2], LABELS, {"cardiomegaly": 0.5}, top=2)
    assert [e["label"] for e in out] == ["cardiomegaly", "pleural effusion"]
    assert out[0]["share"] == pytest.approx(0.45) and out[1]["share"] == pytest.approx(0.08)
    assert out[1]["hit_prob"] is None  # not in the hit's payload
    cosine = label_contributions([0.9, 0.1, 0.0], [0.5, 0.8, 0.2], LABELS, {}, distance="cosine")
    assert sum(e["share"] for e in cosine) == pytest.approx(0.53 / ((0.82**0.5) * (0.93**0.5)), abs=1e-3)
    assert label_contributions(None, [0.1, 0.2, 0.3], LABELS, {}) == []
