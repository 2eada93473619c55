"""The fusion weights a text search uses: ``fusion.json`` beside the checkpoint when it was tuned for
these weights and this RRF ``k``, the defaults without one, one clear error otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxrsearch.errors import ConfigError
from cxrsearch.model.encode import Encoder
from cxrsearch.search.modes import DEFAULT_WEIGHTS, FUSION_FILE, fusion_weights
from cxrsearch.store.base import RRF_K


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
    assert weights.source == "val"


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
