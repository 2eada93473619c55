"""Word-piece merging, attention rollout, geometry mapping and rendering: the parts of an explanation
that turn numbers into what a person reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cxrsearch.errors import QueryError
from cxrsearch.explain.attention import attention_rollout, layer_matrix
from cxrsearch.explain.heatmap import canvas_to_original, grid_to_canvas, heatmap_stats, to_original
from cxrsearch.explain.render import attribution_scale, coloured_report, overlay_rgb, save_png
from cxrsearch.explain.tokens import WordAttribution, baseline_ids, merge_words
from cxrsearch.image.preprocess import preprocess
from cxrsearch.model.config import PreprocessConfig

TEXT = "No pneumothorax; cardiomegaly, x-ray."


# ---------------------------------------------------------------- tokens -> words


def test_word_pieces_merge_into_the_words_of_the_report(tiny_model) -> None:
    tokenizer = tiny_model.tokenizer
    encoded = tokenizer([TEXT], return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert "##ega" in tokens, "the check needs a word split into several pieces"
    scores = np.arange(len(tokens), dtype=np.float64)
    words = merge_words(TEXT, tokens, scores, encoded.word_ids(0), [tuple(p) for p in encoded["offset_mapping"][0]])
    assert [w.word for w in words] == ["No", "pneumothorax", ";", "cardiomegaly", ",", "x", "-", "ray", "."]
    cardio = words[3]
    assert cardio.pieces == ("card", "##iom", "##ega", "##ly")
    assert TEXT[cardio.start : cardio.end] == "cardiomegaly"
    pieces = [i for i, t in enumerate(tokens) if t in cardio.pieces]
    assert cardio.attribution == pytest.approx(scores[pieces].sum())
    assert sum(w.attribution for w in words) == pytest.approx(scores[1:-1].sum())  # [CLS], [SEP] left out


def test_word_pieces_merge_without_offsets() -> None:
    tokens = ["[CLS]", "no", "p", "##ne", "##um", "##otho", "##ra", "##x", "[SEP]"]
    scores = np.array([0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0])
    words = merge_words("No pneumothorax", tokens, scores, None, None)
    assert [(w.word, w.start, w.end) for w in words] == [("No", 0, 2), ("pneumothorax", 3, 15)]
    assert words[1].attribution == pytest.approx(3.0)


def test_token_baseline_keeps_special_tokens(tiny_model) -> None:
    tokenizer = tiny_model.tokenizer
    ids = tokenizer(["heart size normal"], return_tensors="pt")["input_ids"]
    reference = baseline_ids(ids, tokenizer)
    assert reference[0, 0] == tokenizer.cls_token_id and reference[0, -1] == tokenizer.sep_token_id
    assert torch.all(reference[0, 1:-1] == tokenizer.pad_token_id)


# ---------------------------------------------------------------- attention rollout


def test_layer_matrix_is_row_stochastic() -> None:
    rng = np.random.default_rng(0)
    t2i = rng.random((3, 4))
    i2t = rng.random((4, 3))
    matrix = layer_matrix(t2i / t2i.sum(1, keepdims=True), i2t / i2t.sum(1, keepdims=True))
    assert matrix.shape == (7, 7)
    assert np.allclose(matrix.sum(1), 1.0)
    with pytest.raises(QueryError):
        layer_matrix(t2i, i2t.T)


def _forward(model, text: str, pad_to: int | None = None):
    tokenizer = model.tokenizer
    batch = tokenizer([text], return_tensors="pt", padding="max_length" if pad_to else False, max_length=pad_to)
    pixels = torch.rand(
        1,
        1,
        model.config.preprocess.image_size,
        model.config.preprocess.image_size,
        generator=torch.Generator().manual_seed(0),
    )
    model.eval()
    with torch.no_grad():
        return model(pixel_values=pixels, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def test_attention_rollout_of_a_real_forward_pass(tiny_model) -> None:
    out = _forward(tiny_model, "heart size is normal")
    rollout = attention_rollout(out)
    assert rollout.grid == out.patch_grid and rollout.rollout.shape == out.patch_grid
    assert len(rollout.per_layer) == tiny_model.config.fusion.num_layers
    assert all(np.isclose(layer.sum(), 1.0, atol=1e-5) for layer in rollout.per_layer)
    assert np.all(rollout.rollout >= 0) and rollout.rollout.sum() <= 1.0 + 1e-6
    # padding never takes part: the same text padded gives the same map
    padded = attention_rollout(_forward(tiny_model, "heart size is normal", pad_to=24))
    assert padded.text_tokens == rollout.text_tokens
    assert np.allclose(padded.rollout, rollout.rollout, atol=1e-6)


def test_attention_needs_both_modalities(tiny_model) -> None:
    tokenizer = tiny_model.tokenizer
    batch = tokenizer(["heart"], return_tensors="pt")
    with torch.no_grad():
        out = tiny_model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with pytest.raises(QueryError, match="both a radiograph and a report"):
        attention_rollout(out)


# ---------------------------------------------------------------- geometry


def _geometry(height: int, width: int, resize: str = "letterbox"):
    return preprocess(np.zeros((height, width), dtype=np.float32), PreprocessConfig(image_size=64, resize=resize))[1]


def test_letterbox_maps_back_to_the_original_size_without_padding() -> None:
    geometry = _geometry(1955, 1841)  # RG1_UNCR.dcm's geometry: padded left and right
    top, left, bottom, right = geometry.image_box()
    assert left > 0 and top == 0
    canvas = np.zeros((64, 64))
    canvas[:, :left] = 1e6  # padding must never reach the film
    canvas[:, right:] = 1e6
    canvas[top:bottom, left:right] = 1.0
    back = to_original(canvas, geometry)
    assert back.shape == (1955, 1841)
    assert np.isfinite(back).all()
    assert back.max() < 1e6 * 0.5 and np.median(back) == pytest.approx(1.0)


def test_centre_crop_leaves_unseen_film_undrawn() -> None:
    geometry = _geometry(100, 200, resize="center-crop")
    back = to_original(np.ones((7, 7)), geometry)
    assert back.shape == (100, 200)
    assert np.isnan(back[:, 0]).all() and np.isnan(back[:, -1]).all()
    assert np.isfinite(back[:, 100]).all()


def test_heatmap_stats_report_original_coordinates() -> None:
    geometry = _geometry(1000, 500)  # letterbox: 64 x 32 film in the middle of the canvas
    top, left, bottom, right = geometry.image_box()
    heat = np.zeros((64, 64))
    heat[top + 8, left + 4] = 2.0
    heat[top + 40, left + 20] = -1.0
    stats = heatmap_stats(heat, geometry)
    assert stats.total == pytest.approx(1.0) and stats.positive == 2.0 and stats.negative == -1.0
    assert stats.peak == canvas_to_original(geometry, top + 8, left + 4)
    assert abs(stats.peak[0] - 8.5 * 1000 / 64) < 16 and abs(stats.peak[1] - 4.5 * 500 / 32) < 16
    assert stats.on_film_share == 1.0 and stats.original_size == (1000, 500)
    assert np.array_equal(
        grid_to_canvas(np.array([[1.0, 2.0], [3.0, 4.0]]), 4), [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    )


# ---------------------------------------------------------------- rendering


def test_overlay_keeps_the_original_size_and_leaves_nan_undrawn(tmp_path: Path) -> None:
    gray = np.linspace(0, 1, 30 * 20, dtype=np.float32).reshape(30, 20)
    heat = np.zeros_like(gray)
    heat[5, 5], heat[6, 6] = 1.0, -1.0
    heat[:, -3:] = np.nan
    rgb = overlay_rgb(gray, heat, attribution_scale(heat))
    assert rgb.shape == (30, 20, 3) and rgb.dtype == np.uint8
    plain = np.round(gray * 255).astype(np.uint8)
    assert np.all(np.abs(rgb[:, -3:].astype(int) - plain[:, -3:, None]) <= 1)  # nothing drawn on NaN
    assert rgb[5, 5, 1] > rgb[5, 5, 0] and rgb[6, 6, 0] > rgb[6, 6, 1]  # green up, pink down
    from PIL import Image

    with Image.open(save_png(tmp_path / "o.png", rgb)) as image:
        assert image.size == (20, 30)


def test_report_words_are_coloured_by_sign() -> None:
    words = (WordAttribution("No", 0, 2, -0.5, ("no",)), WordAttribution("pneumothorax", 3, 15, 1.0, ("p",)))
    text = coloured_report("No pneumothorax", words)
    styles = {text.plain[span.start : span.end]: str(span.style) for span in text.spans}
    assert "rgb" in styles["pneumothorax"] and "rgb" in styles["No"]
    assert styles["pneumothorax"] != styles["No"]


@pytest.mark.parametrize("name", ["png/padchest_16747_3_1.jpg", "png/CXR1_1_IM-0001-3001.png"])
def test_written_overlays_have_the_films_size(tiny_model, images_dir: Path, tmp_path: Path, name: str) -> None:
    """A landscape JPEG (padded above and below) and a portrait PNG (padded left and right)."""
    from PIL import Image

    from cxrsearch.explain.attribution import pixel_attributions
    from cxrsearch.explain.heatmap import grid_to_canvas, heatmap_stats
    from cxrsearch.explain.output import write_images
    from cxrsearch.explain.target import Target
    from cxrsearch.image.decode import decode_image
    from cxrsearch.model.encode import Encoder

    decoded = decode_image(images_dir / name)
    encoder = Encoder(tiny_model)
    pixels, geometries = encoder.prepare_images([decoded])
    batch = encoder.tokenize(["heart size is normal"])
    with torch.no_grad():
        text = tiny_model.encode_text(batch["input_ids"], batch["attention_mask"])
        out = tiny_model.eval()(pixel_values=pixels, **batch)
    target = Target.label_logit(tiny_model.labels, "normal")
    ig = pixel_attributions(tiny_model, pixels, target, text=text, film_box=geometries[0].image_box(), steps=4)
    attention = attention_rollout(out)
    files = write_images(tmp_path, "hit", "title", decoded, geometries[0], ig, attention)
    pixel_stats = heatmap_stats(ig.attributions, geometries[0])  # the statistics explain() reports
    attention_stats = heatmap_stats(grid_to_canvas(attention.rollout, geometries[0].canvas_size), geometries[0])
    assert set(files) == {"ig_overlay", "attention_overlay", "figure"}
    for key in ("ig_overlay", "attention_overlay"):
        with Image.open(files[key]) as image:
            assert image.size == (decoded.width, decoded.height)
    assert pixel_stats.original_size == (decoded.height, decoded.width)
    assert 0 <= pixel_stats.peak[0] < decoded.height and 0 <= pixel_stats.peak[1] < decoded.width
    assert 0 <= attention_stats.peak[0] < decoded.height and 0 <= attention_stats.peak[1] < decoded.width
