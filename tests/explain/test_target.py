"""What an explanation explains for a text query: the label score when the fusion ranks by it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cxrsearch.errors import QueryError
from cxrsearch.explain.request import ranked_by_label_score
from cxrsearch.explain.target import Target
from cxrsearch.search.modes import DEFAULT_WEIGHTS, FusionWeights
from cxrsearch.store.base import SparseVector


def _output(logits: torch.Tensor):
    return SimpleNamespace(logits=logits)  # what a label-score target reads of a ModelOutput


def test_the_label_score_weighs_the_hits_probabilities_by_the_querys():
    """``sum_i q_i sigmoid(logit_i) / sum_i q_i``: what the linear fusion's labels part holds."""
    query = np.array([0.5, 0.0, 1.5], dtype=np.float32)
    target = Target.label_score(query)
    logits = torch.tensor([[0.0, 3.0, 2.0], [-2.0, 0.0, -1.0]])
    expected = torch.sigmoid(logits) @ torch.tensor([0.25, 0.0, 0.75])
    torch.testing.assert_close(target(_output(logits)), expected)
    assert target.describe().startswith("label score")
    for bad in (np.zeros(3), np.array([0.5, -0.1, 0.2]), np.array([np.nan, 1.0, 0.0])):
        with pytest.raises(QueryError, match="label-score target"):
            Target.label_score(bad)
    with pytest.raises(QueryError, match="3 label probabilities, the model 2 labels"):
        target(_output(torch.zeros(1, 2)))


def test_a_text_query_explains_the_label_score_only_when_no_dense_list_ranks_it():
    vectors = {
        "text": np.ones(4, dtype=np.float32),
        "bm25": SparseVector((1,), (1.0,)),
        "label_probs": np.array([0.9, 0.1], dtype=np.float32),
    }
    assert ranked_by_label_score("text", vectors, DEFAULT_WEIGHTS) == (DEFAULT_WEIGHTS.of("text") == 0)
    linear = FusionWeights({"text": 0.0, "image": 0.0, "bm25": 0.1, "labels": 1.0}, "t", "linear")
    assert ranked_by_label_score("text", vectors, linear)
    with_text = FusionWeights({"text": 0.2, "image": 0.0, "bm25": 0.1, "labels": 1.0}, "t", "linear")
    assert not ranked_by_label_score("text", vectors, with_text)  # the dense part is explained then
    no_labels = {**vectors, "label_probs": np.zeros(2, dtype=np.float32)}  # every label negated
    assert not ranked_by_label_score("text", no_labels, linear)
    assert not ranked_by_label_score("image", {"image": np.ones(4, dtype=np.float32)}, linear)
