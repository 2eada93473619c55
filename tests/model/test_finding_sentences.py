"""Finding sentences: report sentences that affirm one of the study's labels, as extra training texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrsearch.data.labels import label_keywords
from cxrsearch.model.train_data import finding_sentences, load_training_data


@pytest.fixture(scope="module")
def keywords():
    return label_keywords()


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        (
            "Small right pleural effusions. Heart size normal.",
            ("pleural effusion",),
            [("Small right pleural effusions.", ("pleural effusion",))],
        ),
        ("No pleural effusion or pneumothorax.", ("pleural effusion", "pneumothorax"), []),  # denied, not affirmed
        (
            "There is no pneumothorax but a large hiatal hernia.",
            ("hiatal hernia", "pneumothorax"),
            [("There is no pneumothorax but a large hiatal hernia.", ("hiatal hernia",))],
        ),
        ("Surgical clips over the right lung apex.", ("hypoinflation",), []),  # "Lung/hypoinflation" needs both words
        ("Stable cardiomegaly.", ("cardiomegaly", "normal"), [("Stable cardiomegaly.", ("cardiomegaly",))]),
        ("Calcified granulomas in both lungs.", ("pneumonia",), []),  # only the study's own labels
    ],
)
def test_only_affirmed_labels_of_the_study_make_a_sentence(keywords, text, labels, expected):
    assert finding_sentences(text, labels, keywords) == expected


def test_keywords_come_from_the_vocabulary(keywords):
    assert frozenset({"hernia", "hiatal"}) in keywords["hiatal hernia"]  # MeSH "Hernia, Hiatal"
    assert frozenset({"lung", "hypoinflation"}) in keywords["hypoinflation"]  # heading + qualifier
    assert "normal" in keywords and all(keywords.values())


def test_sentences_are_train_only_extra_samples(reports_tgz: Path):
    plain = load_training_data(reports_tgz, limit=300)
    more = load_training_data(reports_tgz, limit=300, sentences=True)
    extra = [uid for uid in more.train.uids if "#s" in uid]
    assert extra and len(more.train) == len(plain.train) + len(extra)
    assert not any("#s" in uid for uid in more.val.uids) and more.val.uids == plain.val.uids
    assert more.fingerprint != plain.fingerprint  # a resume cannot mix the two
    row = more.train.uids.index(extra[0])
    study = extra[0].split("#")[0]
    assert set(more.train.label_sets[row]) <= set(plain.train.label_sets[plain.train.uids.index(study)])
    assert "normal" not in more.train.label_sets[row]
