"""Image preprocessing and the geometry that maps model-resolution maps back onto the film."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cxrsearch.errors import ImageError
from cxrsearch.image.preprocess import normalize, preprocess
from cxrsearch.image.preprocess_config import PreprocessConfig

LETTERBOX = PreprocessConfig(image_size=64, resize="letterbox", pad_value=0.0)
CROP = dataclasses.replace(LETTERBOX, resize="center-crop")


def _film(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (0.2 + 0.6 * (yy / height) * (xx / width)).astype(np.float32)  # never 0: padding is visible


def test_letterbox_keeps_everything_and_pads():
    tensor, geo = preprocess(_film(300, 150), LETTERBOX)  # tall: fits the height, pads left/right
    assert tensor.shape == (1, 64, 64) and tensor.dtype == np.float32
    assert geo.original_size == (300, 150) and geo.resized_size == (64, 32) and geo.offset == (0, 16)
    assert geo.image_box() == (0, 16, 64, 48)
    assert np.abs(tensor[0, :, :16]).max() == 0 and np.abs(tensor[0, :, 48:]).max() == 0  # padding
    assert tensor[0, :, 16:48].min() > 0.1  # film
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0


def test_heatmap_maps_back_to_original_size_and_never_onto_padding():
    original = _film(300, 150)
    tensor, geo = preprocess(original, LETTERBOX)
    back = geo.to_original(tensor[0])  # the model input itself, mapped back
    assert back.shape == (300, 150) and back.dtype == np.float32
    # it is the film again (at model resolution), not the black padding next to it
    assert back.min() > 0.15
    assert np.corrcoef(back.ravel(), original.ravel())[0, 1] > 0.99
    # whatever a map says about the padding never reaches the film
    loud_padding = tensor[0].copy()
    loud_padding[:, :16] = loud_padding[:, 48:] = 100.0
    assert geo.to_original(loud_padding).max() <= 1.0
    # a coarse patch grid (8 x 8) also maps onto the whole original, and a constant map stays constant
    np.testing.assert_allclose(geo.to_original(np.full((8, 8), 0.7)), 0.7, atol=1e-6)


def test_a_spot_lands_where_it_was():
    original = np.zeros((240, 400), np.float32)  # wide: pads top/bottom
    original[150:170, 300:320] = 1.0
    tensor, geo = preprocess(original, LETTERBOX)
    back = geo.to_original(tensor[0])
    y, x = np.unravel_index(np.argmax(back), back.shape)
    assert abs(y - 160) <= 8 and abs(x - 310) <= 8


def test_center_crop_fills_what_the_model_never_saw():
    original = _film(100, 200)
    tensor, geo = preprocess(original, CROP)
    assert tensor.shape == (1, 64, 64) and geo.resized_size == (64, 128) and geo.offset == (0, -32)
    assert tensor.min() > 0.1  # no padding with a crop
    back = geo.to_original(np.ones((8, 8)), fill=-1.0)
    assert back.shape == (100, 200)
    assert (back[:, :49] == -1).all() and (back[:, 151:] == -1).all()  # the cut-off sides
    assert (back[:, 52:148] == 1).all()


def test_real_non_square_radiograph_round_trip(images_dir):
    from cxrsearch.image import decode_image

    decoded = decode_image(images_dir / "dicom" / "RG1_UNCR.dcm")
    assert decoded.height != decoded.width
    tensor, geo = preprocess(decoded.pixels, PreprocessConfig())
    assert tensor.shape == (1, 224, 224)
    heat = geo.to_original(np.random.default_rng(0).random((7, 7)))
    assert heat.shape == decoded.pixels.shape


def test_normalize_replicates_grey_to_channels():
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    grey = torch.rand(2, 1, 8, 8)
    out = normalize(grey, mean, std)
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out[:, 1:2] * std[:, 1:2] + mean[:, 1:2], grey)


def test_bad_images_raise_image_error():
    with pytest.raises(ImageError, match="grey"):
        preprocess(np.zeros((4, 4, 3), np.float32), LETTERBOX)
    with pytest.raises(ImageError, match="NaN"):
        preprocess(np.full((4, 4), np.nan, np.float32), LETTERBOX)
