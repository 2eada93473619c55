"""Validation predictions per study are the mean over its radiographs (each with its report), the
aggregation ``cxrsearch evaluate`` applies, so thresholds tuned on them fit the reported numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxrsearch.model.build import create_model
from cxrsearch.model.config import get_config
from cxrsearch.model.encode import Encoder
from cxrsearch.model.train_data import SplitData
from cxrsearch.model.train_loop import SplitInputs, predict

LABELS = ("cardiomegaly", "effusion", "normal")


def _png(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(96, 80), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def test_a_study_with_several_radiographs_is_the_mean_of_its_points(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(get_config("tiny-test"), LABELS).eval()
    images = [_png(tmp_path / f"{i}.png", i) for i in range(3)]
    texts = ("Cardiomegaly with a small effusion.", "Heart size normal.", None)
    split = SplitData(
        uids=("CXR1", "CXR2", "CXR3"),
        texts=texts,
        images=((images[0], images[1]), (), (images[2],)),
        targets=np.zeros((3, len(LABELS)), dtype=np.float32),
        label_sets=((), (), ()),
        text_keys=texts,
    )
    inputs = SplitInputs(model, split, device="cpu", frozen=False, cache_root=None, all_images=True)
    probs = predict(model, inputs, batch_size=2)

    from cxrsearch.image.decode import decode_image

    encoder = Encoder(model)
    two = encoder.encode(images=[decode_image(p) for p in images[:2]], texts=[texts[0]] * 2).probs
    np.testing.assert_allclose(probs[0], two.mean(axis=0), atol=1e-5)  # both radiographs, not the first alone
    assert not np.allclose(probs[0], two[0], atol=1e-4)
    np.testing.assert_allclose(probs[1], encoder.encode(texts=[texts[1]]).probs[0], atol=1e-5)
    np.testing.assert_allclose(probs[2], encoder.encode(images=[decode_image(images[2])]).probs[0], atol=1e-5)
