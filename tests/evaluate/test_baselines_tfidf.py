"""The TF-IDF + logistic-regression label baseline: same-label reports first, never the query itself,
labels with no positive, determinism, and a real-data check that it is far above random."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cxrsearch.errors import ConfigError
from cxrsearch.evaluate.baselines import cosine_rankings, fit_label_model, tfidf_label_rankings
from cxrsearch.evaluate.metrics import mean_metrics
from cxrsearch.evaluate.relevance import Pool, Query, label_counts, primary_label

VOCAB = ("cardiomegaly", "pleural effusion", "pneumothorax", "normal")
# (uid, text, labels): hand-written reports, three per finding; nothing is labelled pneumothorax.
POOL = [
    ("E1", "Large right pleural effusion with adjacent atelectasis.", ("pleural effusion",)),
    ("C1", "The heart is enlarged. Cardiomegaly, no edema.", ("cardiomegaly",)),
    ("N1", "Lungs are clear. No acute cardiopulmonary disease.", ("normal",)),
    ("E2", "Small left pleural effusion, blunting of the costophrenic angle.", ("pleural effusion",)),
    ("C2", "Cardiomegaly. The heart is enlarged, mediastinum stable.", ("cardiomegaly",)),
    ("N2", "Clear lungs. No acute disease. Heart size normal.", ("normal",)),
    ("E3", "Bilateral pleural effusion, larger on the right.", ("pleural effusion",)),
    ("C3", "Enlarged heart consistent with cardiomegaly.", ("cardiomegaly",)),
    ("N3", "The lungs are clear, no acute cardiopulmonary abnormality.", ("normal",)),
]
UIDS = [uid for uid, _, _ in POOL]
TEXTS = [text for _, text, _ in POOL]
LABELS = [labels for _, _, labels in POOL]


def _rank(query_uids, query_texts, depth=3):
    return tfidf_label_rankings(UIDS, TEXTS, LABELS, query_uids, query_texts, VOCAB, depth)


def test_same_label_reports_come_first_and_the_query_itself_never() -> None:
    queries = ["E1", "C2", "N3", "Q"]
    texts = [TEXTS[0], TEXTS[4], TEXTS[8], "Moderate pleural effusion on the left."]
    ranked = _rank(queries, texts, depth=3)
    assert set(ranked[0][:2]) == {"E2", "E3"} and "E1" not in ranked[0]
    assert set(ranked[1][:2]) == {"C1", "C3"} and "C2" not in ranked[1]
    assert set(ranked[2][:2]) == {"N1", "N2"} and "N3" not in ranked[2]
    assert set(ranked[3][:3]) == {"E1", "E2", "E3"}  # a query from outside the pool keeps every id
    assert all(len(r) == 3 for r in ranked)


def test_depth_past_the_pool_returns_the_pool_less_the_query() -> None:
    ranked = _rank(["E1", "Q"], [TEXTS[0], "cardiomegaly"], depth=50)
    assert sorted(ranked[0]) == sorted(set(UIDS) - {"E1"})
    assert sorted(ranked[1]) == sorted(UIDS)


def test_a_label_without_positives_gets_its_constant_prevalence() -> None:
    model = fit_label_model(TEXTS, LABELS, VOCAB)
    assert model.vocabulary == VOCAB
    assert model.classifiers[VOCAB.index("pneumothorax")] is None
    assert all(c is not None for j, c in enumerate(model.classifiers) if VOCAB[j] != "pneumothorax")
    probs = model.predict(TEXTS + ["Large pneumothorax.", None])
    assert probs.shape == (len(TEXTS) + 2, len(VOCAB)) and probs.dtype == np.float64
    assert np.all(probs[:, VOCAB.index("pneumothorax")] == 0.0)
    assert np.all((probs >= 0) & (probs <= 1))
    # an all-positive label is constant 1.0 too
    every = fit_label_model(TEXTS, [labels + ("pneumothorax",) for labels in LABELS], VOCAB)
    assert np.all(every.predict(TEXTS)[:, VOCAB.index("pneumothorax")] == 1.0)


def test_rankings_are_deterministic_and_ties_keep_pool_order() -> None:
    queries, texts = ["E2", "Q"], [TEXTS[3], "Heart enlarged."]
    assert _rank(queries, texts, depth=8) == _rank(queries, texts, depth=8)
    # identical pool vectors tie: pool order decides, whatever the pool position of the query
    pool = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    ranked = cosine_rankings(["a", "b", "c", "d", "e"], pool, ["c", "z"], np.array([[3.0, 0.0], [1.0, 0.0]]), depth=4)
    assert ranked == [["a", "d", "e", "b"], ["a", "c", "d", "e"]]


def test_bad_inputs_raise_config_errors() -> None:
    with pytest.raises(ConfigError):
        tfidf_label_rankings(UIDS, TEXTS[:-1], LABELS, ["Q"], ["x"], VOCAB, 3)
    with pytest.raises(ConfigError):
        fit_label_model(TEXTS, LABELS[:-1] + [("fracture",)], VOCAB)
    with pytest.raises(ConfigError):
        fit_label_model(["alpha", "beta"], [("normal",), ("normal",)], VOCAB)  # no word in 2 reports
    with pytest.raises(ConfigError):
        cosine_rankings(["a", "a"], np.eye(2), ["q"], np.ones((1, 2)), 1)
    assert tfidf_label_rankings([], [], [], ["Q"], ["x"], VOCAB, 3) == [[]]


@pytest.mark.slow
def test_real_reports_test_vs_train_is_far_above_random(reports_tgz: Path, record_property) -> None:
    from cxrsearch.data.labels import label_names
    from cxrsearch.data.openi import load_studies

    studies = load_studies(reports_tgz)
    vocabulary = label_names()
    train = [s for s in studies if s.split == "train"]
    counts = label_counts(s.labels for s in train)
    pool = Pool([s.uid for s in train], [s.labels for s in train], vocabulary)
    queries = [
        (Query(s.uid, s.labels, primary_label(s.labels, counts, vocabulary)), s.report_text())
        for s in studies
        if s.split == "test" and s.labels and s.report_text()
    ]
    queries = [(q, text) for q, text in queries if pool.gains(q, "strict").any()]
    tick = time.perf_counter()
    ranked = tfidf_label_rankings(
        [s.uid for s in train],
        [s.report_text() for s in train],
        [s.labels for s in train],
        [q.uid for q, _ in queries],
        [text for _, text in queries],
        vocabulary,
        10,
    )
    seconds = time.perf_counter() - tick
    strict = mean_metrics([pool.judge(q, r, "strict", 10) for (q, _), r in zip(queries, ranked)], (10,))["P@10"]
    record_property("tfidf_lr_strict_p_at_10", strict)
    record_property("tfidf_lr_seconds", seconds)
    print(f"TF-IDF+LR test vs train: strict P@10 {strict:.4f} on {len(queries)} queries in {seconds:.2f}s")
    assert all(len(r) == 10 for r in ranked)
    assert strict > 0.5
