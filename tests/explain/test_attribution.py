"""Do the Integrated Gradients maps mean something? Completeness, model randomisation (Adebayo et al.
2018), input dependence and determinism, on the session's tiny checkpoint and real radiographs."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cxrsearch.explain.attribution import attribution_mode, make_baseline, pixel_attributions
from cxrsearch.explain.heatmap import film_mask
from cxrsearch.explain.target import Target
from cxrsearch.explain.tokens import token_attributions

REPORT = "The heart is enlarged. Small left pleural effusion. No pneumothorax."


def _inputs(model, path: Path):
    """Canvas pixels, geometry and the report's text features of one real radiograph."""
    from cxrsearch.image.decode import decode_image
    from cxrsearch.model.encode import Encoder

    encoder = Encoder(model)
    pixels, geometries = encoder.prepare_images([decode_image(path)])
    batch = encoder.tokenize([REPORT])
    with torch.no_grad():
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
    return pixels, geometries[0], batch, text


def _query(model) -> Target:
    from cxrsearch.model.encode import Encoder

    return Target.similarity(Encoder(model).encode(texts=["enlarged heart"]).text[0])


def _ig(model, path: Path, target: Target, steps: int = 32, baseline: str = "black"):
    pixels, geometry, _, text = _inputs(model, path)
    result = pixel_attributions(
        model, pixels, target, text=text, film_box=geometry.image_box(), steps=steps, baseline=baseline
    )
    return result, geometry


def _full_model_score(model, pixels, batch, target: Target) -> float:
    """The target through a plain forward pass of the whole model (towers included, nothing cached)."""
    model.eval()
    with torch.no_grad():
        return float(target(model(pixel_values=pixels, **batch))[0])


def _target(model, kind: str) -> Target:
    if kind == "similarity":
        return _query(model)
    if kind == "labels":  # the label score a text search with the default fusion ranks by
        from cxrsearch.model.encode import Encoder

        return Target.label_score(Encoder(model).encode(texts=["enlarged heart"]).probs[0])
    return Target.label_logit(model.labels, "cardiomegaly")


@pytest.mark.parametrize("target_kind", ["similarity", "label", "labels"])
def test_pixel_attributions_are_complete(tiny_model, images_dir: Path, target_kind: str) -> None:
    path = images_dir / "dicom" / "RG1_UNCR.dcm"
    target = _target(tiny_model, target_kind)
    pixels, geometry, batch, _ = _inputs(tiny_model, path)
    coarse, _ = _ig(tiny_model, path, target, steps=4)
    result, _ = _ig(tiny_model, path, target, steps=64)

    # f(x) and f(baseline) recomputed independently by the whole model agree with what IG integrated
    assert result.score == pytest.approx(_full_model_score(tiny_model, pixels, batch, target), abs=1e-5)
    black = torch.zeros_like(pixels)
    assert result.baseline_score == pytest.approx(_full_model_score(tiny_model, black, batch, target), abs=1e-5)
    moved = result.score - result.baseline_score
    assert abs(moved) > 1e-4, "the image must move the score for the check to mean anything"
    # completeness: attributions sum to f(x) - f(baseline) within the reported delta, which is small
    total = float(result.attributions.astype(np.float64).sum())
    assert abs(total - moved) <= abs(result.delta) + 1e-6
    assert abs(result.delta) <= 0.01 * abs(moved)
    assert abs(result.delta) < abs(coarse.delta), "more steps must integrate more accurately"


def test_black_baseline_gives_padding_exactly_zero(tiny_model, images_dir: Path) -> None:
    result, geometry = _ig(tiny_model, images_dir / "dicom" / "RG1_UNCR.dcm", _query(tiny_model), steps=8)
    film = film_mask(geometry)
    assert (~film).any(), "RG1_UNCR is not square: the letterbox must pad it"
    assert np.all(result.attributions[~film] == 0.0)
    assert np.count_nonzero(result.attributions[film]) > 0.9 * film.sum()


def test_blur_baseline_is_complete_and_keeps_padding(tiny_model, images_dir: Path) -> None:
    path = images_dir / "dicom" / "RG1_UNCR.dcm"
    pixels, geometry, _, _ = _inputs(tiny_model, path)
    base = make_baseline(pixels, "blur", geometry.image_box(), 0.0)
    film = torch.from_numpy(film_mask(geometry))
    assert torch.equal(base[0, 0][~film], pixels[0, 0][~film])
    assert not torch.allclose(base[0, 0][film], pixels[0, 0][film])
    result, _ = _ig(tiny_model, path, _query(tiny_model), steps=32, baseline="blur")
    moved = result.score - result.baseline_score
    assert abs(float(result.attributions.sum()) - moved) <= abs(result.delta) + 1e-6
    assert abs(result.delta) <= 0.01 * abs(moved)


def test_token_attributions_are_complete(tiny_model, images_dir: Path) -> None:
    pixels, _, batch, _ = _inputs(tiny_model, images_dir / "png" / "nih_00000001_000.png")
    target = _query(tiny_model)
    with torch.no_grad():
        image = tiny_model.encode_image(pixels)
    result = token_attributions(tiny_model, REPORT, target, image=image, steps=32)
    assert result.score == pytest.approx(_full_model_score(tiny_model, pixels, batch, target), abs=1e-5)
    moved = result.score - result.baseline_score
    words_total = sum(w.attribution for w in result.words)
    assert words_total == pytest.approx(float(result.token_attributions.astype(np.float64).sum()), abs=1e-6)
    assert abs(words_total - moved) <= abs(result.delta) + 1e-6
    assert abs(result.delta) <= 0.01 * abs(moved)
    specials = [i for i, token in enumerate(result.tokens) if token in ("[CLS]", "[SEP]")]
    assert specials and np.all(result.token_attributions[specials] == 0.0)


def _reinitialised_image_tower(model):
    """A copy of ``model`` whose image tower has fresh random weights (Adebayo's model randomisation)."""
    from cxrsearch.model.image_tower import build_image_tower

    torch.manual_seed(1234)
    fresh = build_image_tower(model.config, pretrained=False)
    other = copy.deepcopy(model)
    other.image_tower.load_state_dict(fresh.state_dict())
    return other


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a.ravel(), b.ravel())[0])


@pytest.mark.parametrize("target_kind", ["similarity", "label", "labels"])
def test_model_randomisation_changes_the_map(tiny_model, images_dir: Path, target_kind: str) -> None:
    path = images_dir / "dicom" / "RG1_UNCR.dcm"
    target = _target(tiny_model, target_kind)
    first, geometry = _ig(tiny_model, path, target, steps=16)
    second, _ = _ig(tiny_model, path, target, steps=16)
    randomised, _ = _ig(_reinitialised_image_tower(tiny_model), path, target, steps=16)
    film = film_mask(geometry)
    a, b, r = first.attributions[film], second.attributions[film], randomised.attributions[film]
    assert _rank_correlation(a, b) == pytest.approx(1.0)
    # the map depends on the learned weights, not just on the film: signed and absolute maps both change
    assert _rank_correlation(a, r) < 0.5
    assert _rank_correlation(np.abs(a), np.abs(r)) < 0.5


def _reinitialised_label_head(model):
    """A copy of ``model`` with a fresh random label head: the first step of Adebayo et al.'s
    cascading randomisation, for the targets read off the head (label logit, label score)."""
    torch.manual_seed(4321)
    other = copy.deepcopy(model)
    other.label_head.reset_parameters()
    return other


@pytest.mark.parametrize("target_kind", ["label", "labels"])
def test_randomising_the_label_head_changes_the_word_map(tiny_model, images_dir: Path, target_kind: str) -> None:
    # what a text search under the default fusion explains (the label score) is read off the label
    # head: with the head's weights randomised, the words that carry it must change
    pixels, _, _, _ = _inputs(tiny_model, images_dir / "png" / "nih_00000001_000.png")
    randomised = _reinitialised_label_head(tiny_model)

    def words(model) -> np.ndarray:
        with torch.no_grad():
            image = model.encode_image(pixels)
        result = token_attributions(model, REPORT, _target(tiny_model, target_kind), image=image, steps=32)
        assert abs(result.delta) <= 0.01 * abs(result.score - result.baseline_score) + 1e-6  # both complete
        return np.array([w.attribution for w in result.words])

    trained, again, random = words(tiny_model), words(tiny_model), words(randomised)
    assert np.array_equal(trained, again)
    assert _rank_correlation(trained, random) < 0.5, _rank_correlation(trained, random)


def test_maps_depend_on_the_input_and_are_deterministic(tiny_model, images_dir: Path) -> None:
    target = _query(tiny_model)
    one, _ = _ig(tiny_model, images_dir / "png" / "nih_00000001_000.png", target, steps=16)
    again, _ = _ig(tiny_model, images_dir / "png" / "nih_00000001_000.png", target, steps=16)
    other, _ = _ig(tiny_model, images_dir / "png" / "nih_00027426_000.png", target, steps=16)
    assert np.array_equal(one.attributions, again.attributions)
    assert one.score == again.score and one.delta == again.delta
    difference = np.linalg.norm(one.attributions - other.attributions) / np.linalg.norm(one.attributions)
    assert difference > 0.2
    assert _rank_correlation(one.attributions, other.attributions) < 0.99


def test_attribution_mode_restores_the_model(tiny_model) -> None:
    model = copy.deepcopy(tiny_model).train()
    flags = [p.requires_grad for p in model.parameters()]
    with attribution_mode(model):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.training and [p.requires_grad for p in model.parameters()] == flags


def test_bad_steps_and_baseline_are_refused(tiny_model, images_dir: Path) -> None:
    from cxrsearch.errors import QueryError

    pixels, geometry, _, text = _inputs(tiny_model, images_dir / "png" / "nih_00000001_000.png")
    with pytest.raises(QueryError, match="--steps"):
        pixel_attributions(tiny_model, pixels, _query(tiny_model), text=text, film_box=geometry.image_box(), steps=0)
    with pytest.raises(QueryError, match="baseline"):
        pixel_attributions(
            tiny_model, pixels, _query(tiny_model), text=text, film_box=geometry.image_box(), baseline="white"
        )


def test_bf16_attributions_are_the_same_maps_and_stay_complete(tiny_model, images_dir: Path) -> None:
    # `--precision bf16` (the default where the CPU has native bfloat16) must explain the same way:
    # the same pixels and words on top, completeness still within the reported delta.
    path = images_dir / "dicom" / "RG1_UNCR.dcm"
    target = _query(tiny_model)
    pixels, geometry, batch, text = _inputs(tiny_model, path)
    maps = {
        p: pixel_attributions(
            tiny_model, pixels, target, text=text, film_box=geometry.image_box(), steps=32, precision=p
        )
        for p in ("fp32", "bf16")
    }
    with torch.no_grad():
        image = tiny_model.encode_image(pixels)
    words = {
        p: token_attributions(tiny_model, REPORT, target, image=image, steps=32, precision=p) for p in ("fp32", "bf16")
    }
    assert (maps["bf16"].precision, words["bf16"].precision, maps["fp32"].precision) == ("bf16", "bf16", "fp32")
    assert maps["bf16"].score != maps["fp32"].score  # bf16 really ran (the towers' rounding shows)
    assert maps["bf16"].score == pytest.approx(maps["fp32"].score, abs=1e-2)
    film = film_mask(geometry)
    assert _rank_correlation(maps["fp32"].attributions[film], maps["bf16"].attributions[film]) > 0.95
    assert spearmanr(words["fp32"].token_attributions, words["bf16"].token_attributions).correlation > 0.95
    for result in (maps["bf16"], words["bf16"]):
        total = float(np.sum(result.attributions if hasattr(result, "attributions") else result.token_attributions))
        assert abs(total - (result.score - result.baseline_score)) <= abs(result.delta) + 1e-6
        assert abs(result.delta) <= 0.1 * abs(result.score - result.baseline_score)


def test_precision_choice_is_explicit_and_checked() -> None:
    from cxrsearch.errors import QueryError
    from cxrsearch.explain.attribution import PRECISIONS, resolve_precision
    from cxrsearch.explain.request import ExplainRequest

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    if flags:  # Linux: the CPU's own flags say whether bfloat16 is native (AVX512-BF16 or AMX)
        native = "avx512_bf16" in flags or "amx_bf16" in flags
        assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert resolve_precision("auto", cpu) in PRECISIONS
    assert resolve_precision("auto", torch.device("meta")) == "fp32"
    with pytest.raises(QueryError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", cpu)
    with pytest.raises(QueryError, match="unknown precision 'half'"):
        ExplainRequest(hit="CXR1", collection="cases", text="x", precision="half")
    with pytest.raises(QueryError, match="--like is empty"):
        ExplainRequest(hit="CXR1", collection="cases", like="  ")
    with pytest.raises(QueryError, match="--text is empty"):
        ExplainRequest(hit="CXR1", collection="cases", text="   ")
