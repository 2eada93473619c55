"""The fusion weights a text search uses: ``fusion.json`` beside the checkpoint when it was tuned for
these weights and this RRF ``k`` (or for the linear fusion), the defaults without one, one clear
error otherwise; and what the linear fusion multiplies each component's scores by."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrsearch.errors import ConfigError
from cxrsearch.model.encode import Encoder
from cxrsearch.search.modes import (
    DEFAULT_WEIGHTS,
    FUSION_FILE,
    FusionWeights,
    active_components,
    fusion_coefficients,
    fusion_weights,
)
from cxrsearch.store.base import RRF_K, SparseVector


@pytest.fixture
def checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    (copy / FUSION_FILE).unlink(missing_ok=True)
    return copy


def _write(checkpoint: Path, **record) -> Path:
    path = checkpoint / FUSION_FILE
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def test_without_fusion_json_the_default_weights_apply(checkpoint):
    assert fusion_weights(Encoder(checkpoint)) == DEFAULT_WEIGHTS


def test_weights_tuned_for_this_checkpoint_and_k_are_used(checkpoint):
    fingerprint = Encoder(checkpoint).checkpoint.info.fingerprint
    _write(
        checkpoint,
        fingerprint=fingerprint,
        rrf_k=RRF_K,
        weights={"text": 2.0, "bm25": 0.0, "labels": 1.0},
        source="val",
    )
    weights = fusion_weights(Encoder(checkpoint))
    assert (weights.of("text"), weights.of("bm25"), weights.of("labels")) == (2.0, 0.0, 1.0)
    assert weights.source == "val" and weights.fusion == "rrf"  # a file without "fusion" tuned RRF


def test_a_linear_fusion_json_is_used_whatever_its_rrf_k(checkpoint):
    fingerprint = Encoder(checkpoint).checkpoint.info.fingerprint
    _write(checkpoint, fingerprint=fingerprint, fusion="linear", weights={"text": 0.0, "bm25": 0.1, "labels": 1.0})
    weights = fusion_weights(Encoder(checkpoint))
    assert weights.fusion == "linear" and weights.of("bm25") == 0.1


def test_the_image_list_joins_text_queries_only_for_checkpoints_trained_with_radiographs(
    checkpoint, text_only_checkpoint, tmp_path
):
    """A tuned weight for the cross-modal ``image`` list is kept for a checkpoint whose image side
    learned, and set to 0 for one that never saw a radiograph (its image vectors are noise)."""
    text_only = tmp_path / "text-only"
    shutil.copytree(text_only_checkpoint, text_only)
    for ckpt in (checkpoint, text_only):
        fingerprint = Encoder(ckpt).checkpoint.info.fingerprint
        _write(ckpt, fingerprint=fingerprint, fusion="linear", weights={"image": 0.3, "bm25": 0.1, "labels": 1.0})
    assert fusion_weights(Encoder(checkpoint)).of("image") == 0.3
    assert fusion_weights(Encoder(text_only)).of("image") == 0.0


def test_an_unknown_fusion_in_fusion_json_is_refused(checkpoint):
    fingerprint = Encoder(checkpoint).checkpoint.info.fingerprint
    path = _write(checkpoint, fingerprint=fingerprint, fusion="dbsf", rrf_k=RRF_K, weights={"text": 1.0})
    with pytest.raises(ConfigError, match="unknown fusion 'dbsf'") as caught:
        fusion_weights(Encoder(checkpoint))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"rrf_k": RRF_K}, "fingerprint differs"),  # tuned for other weights
        ({}, "tuned for RRF k = 60"),  # written before the key existed: tuned at k = 60
        ({"rrf_k": RRF_K + 59}, f"tuned for RRF k = {RRF_K + 59}"),
    ],
)
def test_weights_tuned_for_other_weights_or_another_k_are_refused(checkpoint, record, message):
    fingerprint = Encoder(checkpoint).checkpoint.info.fingerprint
    if "fingerprint differs" in message:
        fingerprint = "0" * 64
    path = _write(checkpoint, fingerprint=fingerprint, weights={"text": 0.5}, **record)
    with pytest.raises(ConfigError, match=message) as caught:
        fusion_weights(Encoder(checkpoint))
    assert str(path) in str(caught.value)


def _text_query(label_probs, bm25_values=(1.0, 1.0, 1.0)):
    return {
        "text": np.ones(4, dtype=np.float32) / 2,
        "bm25": SparseVector(tuple(range(len(bm25_values))), tuple(bm25_values)),
        "label_probs": np.asarray(label_probs, dtype=np.float32),
    }


def test_linear_coefficients_scale_bm25_and_labels_to_the_query():
    """A linear weight means the same for a short and a long query: BM25 scores (one per query term)
    are divided by the query's term weight sum, label scores by its label probability sum; dense
    cosines are used as they are. RRF uses the weights as given."""
    linear = FusionWeights({"text": 0.2, "bm25": 0.1, "labels": 1.0, "image": 0.0}, "t", "linear")
    query = _text_query([0.5, 0.25, 0.25, 0.0], bm25_values=(1.0, 1.0, 2.0, 1.0))
    components = active_components("text", query, linear)
    assert [c.name for c in components] == ["text", "bm25", "labels"]  # image weighs 0: left out
    coefficients = dict(zip((c.name for c in components), fusion_coefficients(components, query, linear)))
    assert coefficients == pytest.approx({"text": 0.2, "bm25": 0.1 / 5.0, "labels": 1.0 / 1.0})
    rrf = FusionWeights(dict(linear.weights), "t", "rrf")
    assert fusion_coefficients(components, query, rrf) == [0.2, 0.1, 1.0]


def test_a_label_vector_of_zeros_is_left_out_of_the_fusion():
    """Every label negated ("no effusion, no pneumothorax" can zero them all): the label vector would
    score every point 0, a list in arbitrary order, so it takes no part."""
    weights = FusionWeights({"text": 1.0, "bm25": 1.0, "labels": 1.0, "image": 0.0}, "t", "linear")
    names = [c.name for c in active_components("text", _text_query([0.0, 0.0, 0.0, 0.0]), weights)]
    assert names == ["text", "bm25"]
