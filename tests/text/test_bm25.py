"""BM25 vectors: negation words kept, negated mentions marked, avg_len from the corpus."""

from __future__ import annotations

import pytest

from cxrsearch.store.schema import Bm25Spec
from cxrsearch.text.bm25 import average_length, embed_documents, embed_query, mark_negations, token_count

PARAMS = Bm25Spec(k=1.2, b=0.75, avg_len=20.0)


@pytest.mark.parametrize(
    ("text", "marked"),
    [
        (
            "No pneumothorax, pleural effusion or focal consolidation. Heart size normal.",
            "no nopneumothorax nopleural noeffusion or nofocal noconsolidation . heart size normal .",
        ),
        (
            "There is no evidence of pneumothorax but a large left effusion.",
            "there is no noevidence of nopneumothorax but a large left effusion .",
        ),
        ("No change in the small right pleural effusion.", "no change in the small right pleural effusion ."),
        (
            "Heart is enlarged without pulmonary edema; lungs clear.",
            "heart is enlarged without nopulmonary noedema ; lungs clear .",
        ),
        ("Negative for acute fracture.", "negative for noacute nofracture ."),
    ],
)
def test_negated_mentions_are_marked_to_the_end_of_their_clause(text, marked):
    assert mark_negations(text) == marked


def _shared(a, b) -> set[int]:
    return set(a.indices) & set(b.indices)


def test_a_finding_query_does_not_match_its_denial_and_a_denial_query_does():
    denial, finding = embed_documents(["No pleural effusion.", "Large right pleural effusion."], PARAMS)
    query = embed_query("pleural effusion", PARAMS)
    assert not _shared(query, denial) and len(_shared(query, finding)) == 2
    negated = embed_query("no pleural effusion", PARAMS)
    assert len(_shared(negated, denial)) == 3  # "no" is kept: the English default drops it


def test_stopwords_drop_but_negation_words_stay():
    assert token_count("the heart is of normal size") == 3  # heart, normal, size
    assert token_count("no effusion without edema") == 4
    assert embed_query("the of and", PARAMS) is None  # nothing left to search with


def test_average_length_is_the_mean_token_count_of_non_empty_texts():
    assert average_length(["heart normal", "lungs clear bilaterally", None, ""]) == 2.5
    assert average_length([]) == 1.0


def test_documents_need_a_resolved_avg_len():
    from cxrsearch.errors import StoreError

    with pytest.raises(StoreError, match="avg_len is not set"):
        embed_documents(["heart normal"], Bm25Spec(1.2, 0.75, None))
