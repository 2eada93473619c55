"""The numpy resize behind preprocessing equals torch's ``F.interpolate`` (the reference it replaced)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrsearch.image import decode_image
from cxrsearch.image.resize import MODES, resize, weights


def _torch(array: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    extra = {} if mode == "area" else {"antialias": True, "align_corners": False}
    return F.interpolate(torch.from_numpy(array)[None, None], size=size, mode=mode, **extra)[0, 0].numpy()


def _films(images_dir):
    paths = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in (".dcm", ".png", ".jpg", ".jpeg"))
    return [decode_image(p).pixels.astype(np.float32) for p in paths[:3]]


@pytest.mark.parametrize("mode", MODES)
def test_resize_equals_torch_on_real_radiographs_shrinking_and_enlarging(images_dir, mode):
    for film in _films(images_dir):
        height, width = film.shape
        for size in ((224, 224), (224, round(224 * width / height)), (61, 37), (height // 3 * 4, width + 5)):
            got = resize(film, size, mode)
            assert got.shape == size and got.dtype == np.float32
            assert np.abs(got - _torch(film, size, mode)).max() < 1e-4, (film.shape, size)


@pytest.mark.parametrize("mode", MODES)
def test_weights_rows_sum_to_one_and_stay_local(mode):
    for source, target in ((1000, 224), (37, 224), (224, 224), (5, 1)):
        matrix = weights(source, target, mode)
        assert np.allclose(matrix.sum(1), 1.0)
        assert (np.count_nonzero(matrix, axis=1) <= 4 * max(1, source / target) + 2).all()


def test_bad_resize_requests_raise():
    with pytest.raises(ValueError, match="resize mode"):
        weights(10, 5, "lanczos")
    with pytest.raises(ValueError, match="cannot resize"):
        weights(0, 5, "area")
    with pytest.raises(ValueError, match="grey"):
        resize(np.zeros((4, 4, 3), np.float32), (2, 2), "area")
