"""BM25 through the bm25s package, random/cosine baselines, classification at the checkpoint's thresholds,
the CXR-CLIP pair recall, and mode availability (image modes say "no images")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrsearch.data.labels import label_names
from cxrsearch.evaluate import baselines
from cxrsearch.evaluate.baselines import bm25_rankings, cosine_rankings, random_rankings
from cxrsearch.evaluate.classification import evaluate_classification
from cxrsearch.evaluate.crossmodal import pair_recall
from cxrsearch.evaluate.retrieval import QueryCase, evaluate_retrieval

POOL = ["A", "B", "C", "D"]
TEXTS = [
    "Large right pleural effusion with compressive atelectasis.",
    "The heart is enlarged. Cardiomegaly without edema.",
    "Lungs are clear. No acute cardiopulmonary disease.",
    "Small left pleural effusion.",
]


def test_bm25_ranks_with_the_bm25s_package_and_drops_the_query_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    import bm25s

    calls = []
    original = bm25s.BM25.retrieve

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("k"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(bm25s.BM25, "retrieve", spy)
    ranked = bm25_rankings(POOL, TEXTS, ["A", "X"], [TEXTS[0], "pleural effusion"], depth=2)
    assert calls == [3]  # one call for all queries, one extra hit to drop the query's own report
    assert ranked[0][0] == "D" and "A" not in ranked[0] and len(ranked[0]) == 2  # own report dropped
    assert set(ranked[1]) == {"A", "D"}  # only the effusion reports share terms with the query


def test_random_and_cosine_rankings_never_return_the_query() -> None:
    for ranking in random_rankings(POOL, POOL, depth=10, seed=3):
        assert len(ranking) == 3 and len(set(ranking)) == 3
    assert random_rankings(POOL, POOL, depth=10, seed=3) == random_rankings(POOL, POOL, depth=10, seed=3)
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] = [0.8, 0.6, 0, 0]
    assert cosine_rankings(POOL, vectors, ["A", "Z"], vectors[[0, 0]], depth=2) == [["B", "C"], ["A", "B"]]


def test_f1_uses_the_checkpoint_thresholds_and_never_tunes(monkeypatch: pytest.MonkeyPatch) -> None:
    import cxrsearch.model.metrics as model_metrics

    def refuse(*args, **kwargs):  # pragma: no cover - reaching it is the failure
        raise AssertionError("thresholds must never be tuned on the evaluated split")

    monkeypatch.setattr(model_metrics, "tune_thresholds", refuse)
    labels = ("cardiomegaly", "edema", "normal")
    label_sets = [("cardiomegaly",)] * 5 + [("edema",)] * 2 + [("normal",)] * 5
    probs = np.zeros((12, 3))
    probs[:5, 0] = [0.9, 0.8, 0.7, 0.3, 0.2]  # cardiomegaly positives
    probs[5:, 0] = [0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    probs[5:7, 1] = [0.9, 0.8]
    probs[7:, 2] = 0.9
    result = evaluate_classification(label_sets, probs, labels, thresholds=[0.65, 0.5, 0.5])
    card = result.labels[0]
    # at 0.65: TP 3 (0.9, 0.8, 0.7), FP 0, FN 2 -> F1 = 6 / (3 + 5) = 0.75; tuning on this split would
    # have chosen ~0.15 (F1 10 / 11 = 0.909): the evaluated split must not get that advantage
    assert card.f1 == pytest.approx(0.75) and card.threshold == 0.65
    assert card.auroc == pytest.approx(33 / 35)  # the negative at 0.6 outranks the positives at 0.3 and 0.2
    assert result.labels[1].positives == 2 and not result.labels[1].scored
    assert result.too_few_positives == ("edema",) and result.scored == ("cardiomegaly", "normal")
    assert result.macro_auroc == pytest.approx((card.auroc + 1.0) / 2)


def test_pair_recall_by_hand_and_ties_count_against() -> None:
    images = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    texts = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    i2t, t2i = pair_recall(images, texts, ks=(1, 2))
    # scores (image x report): [[1, .6, 0], [0, .8, 1], [.6, 1, .8]]: image 0 finds its report first,
    # images 1 and 2 second; reports: 0 first, 1 and 2 second
    assert i2t == {"R@1": pytest.approx(1 / 3), "R@2": pytest.approx(1.0)}
    assert t2i["R@1"] == pytest.approx(1 / 3)
    tied = pair_recall(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]), ks=(1,))
    assert tied == ({"R@1": 0.0}, {"R@1": 0.0})


def test_image_modes_report_no_images_and_text_baselines_still_run() -> None:
    from cxrsearch.evaluate.casebase import Case, CasePoint

    vocab = label_names()
    zeros = np.zeros(len(vocab))
    cases = {
        uid: Case(uid, split, (CasePoint(uid, None, None, None, {}, zeros),))
        for uid, split in [("CXR1", "train"), ("CXR2", "train"), ("CXR3", "train"), ("CXR4", "test"), ("CXR5", "test")]
    }
    labels = {
        "CXR1": ("normal",),
        "CXR2": ("cardiomegaly",),
        "CXR3": ("normal",),
        "CXR4": ("normal",),
        "CXR5": ("cardiomegaly",),
    }
    texts = {
        "CXR1": "lungs clear",
        "CXR2": "heart enlarged",
        "CXR3": "normal chest",
        "CXR4": "clear lungs",
        "CXR5": "enlarged heart",
    }
    queries = [QueryCase(uid, labels[uid], labels[uid][0], texts[uid], None) for uid in ("CXR4", "CXR5")]
    result = evaluate_retrieval("test", queries, cases, labels, texts, vocab, searchers={}, ks=(1, 2))
    notes = {(s.setting, s.mode): s.note for s in result.modes}
    assert notes[("historical", "image->case")] == "no images" and notes[("within", "image+text->case")] == "no images"
    assert notes[("historical", "text->case")] is None
    bm25 = result.row("historical", "text->case", "bm25", "strict")
    assert bm25 is not None and bm25.metrics["P@1"] == 1.0 and bm25.queries == 2
    assert result.no_relevant == {"historical": 0, "within": 2}  # in test, each query is alone with its label
    assert notes[("within", "text->case")] == "no query has a relevant study in this pool"
    assert not math.isnan(result.row("historical", "case->case", "random", "lenient").metrics["MRR"])
    assert baselines.BM25_SETTINGS["stopwords"] == "en"
