"""Explanations that pass sanity checks on a model that really learned from radiographs.

The session's other checkpoints learned little from films, so a map test there cannot tell a
faithful method from one that ignores the model. Here a small model is trained through the real
``train()`` on radiograph phantoms (``cxrsearch.data.phantoms``: the drawn finding's mask is known),
and Integrated Gradients on a film must

- put more of its positive mass on the drawn finding than the finding's share of the film
  (localisation: the attribution ratio of ``benchmarks/bench_phantoms.py``);
- change when the trained image tower is replaced by random weights (model randomisation,
  Adebayo et al. 2018);
- change when the same model is trained on films paired with shuffled reports (data
  randomisation, Adebayo et al. 2018: labels no longer follow the film).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cxrsearch.data.phantoms import PhantomSet, make_phantoms
from cxrsearch.explain.attribution import pixel_attributions
from cxrsearch.explain.target import Target
from tests.phantom_training import SIZE, phantom_config, train_on_phantoms

FINDING = "support devices"
FINDINGS = ("cardiomegaly", "hyperinflation", "support devices")


def _train(data: Path, images: Path, config: Path, out: Path):
    from cxrsearch.model.checkpoint import load_checkpoint

    return load_checkpoint(train_on_phantoms(data, images, config, out).checkpoint).model


def _shuffled_copy(phantoms: PhantomSet, root: Path) -> Path:
    """The phantom reports with their films permuted among the studies (seeded): each film now
    comes with another study's report and labels."""
    reports = sorted((phantoms.root / "ecgen-radiology").glob("*.xml"))
    texts = [p.read_text(encoding="utf-8") for p in reports]
    ids = [re.search(r'<parentImage id="([^"]+)"', t).group(1) for t in texts]
    order = np.random.default_rng(7).permutation(len(ids))
    out = root / "ecgen-radiology"
    out.mkdir(parents=True)
    for path, text, own, j in zip(reports, texts, ids, order):
        (out / path.name).write_text(
            text.replace(f'<parentImage id="{own}"', f'<parentImage id="{ids[j]}"'), encoding="utf-8"
        )
    assert sum(a != b for a, b in zip(ids, (ids[j] for j in order))) > 0.8 * len(ids)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom-sanity")
    phantoms = make_phantoms(
        root / "data", 96, seed=1, size=SIZE, splits=(0.75, 0.125, 0.125), normal_fraction=0.25, findings=FINDINGS
    )
    config = phantom_config(root, "phantom-sanity")
    trained = _train(phantoms.root, phantoms.images_dir, config, root / "trained")
    shuffled = _train(_shuffled_copy(phantoms, root / "shuffled"), phantoms.images_dir, config, root / "shuffled-ckpt")
    return phantoms, trained, shuffled


def _films(phantoms: PhantomSet, n: int = 6):
    """``(decoded film, mask [S, S])`` of held-out films that show the finding."""
    from cxrsearch.image.decode import decode_image

    chosen = [s for s in phantoms.studies if s.split != "train" and FINDING in s.labels][:n]
    assert len(chosen) >= 3, "the phantom set must hold held-out films with the finding"
    out = []
    for study in chosen:
        finding = next(f for f in study.findings if f.label == FINDING)
        out.append((decode_image(phantoms.root / study.image), phantoms.mask(finding)))
    return out


def _map(model, decoded) -> np.ndarray:
    from cxrsearch.model.encode import Encoder

    pixels, geometries = Encoder(model).prepare_images([decoded])
    target = Target.label_logit(model.labels, FINDING)
    result = pixel_attributions(model, pixels, target, text=None, film_box=geometries[0].image_box(), steps=16)
    return result.attributions


def _ratio(heat: np.ndarray, mask: np.ndarray) -> float:
    positive = np.clip(heat, 0.0, None)
    return float((positive * mask).sum() / max(positive.sum(), 1e-12) / max(mask.mean(), 1e-12))


def _randomised(model):
    from cxrsearch.model.image_tower import build_image_tower

    torch.manual_seed(1234)
    other = copy.deepcopy(model)
    other.image_tower.load_state_dict(build_image_tower(model.config, pretrained=False).state_dict())
    return other


def test_integrated_gradients_put_their_mass_on_the_drawn_finding(models):
    phantoms, trained, _ = models
    ratios = [_ratio(_map(trained, pixels), mask) for pixels, mask in _films(phantoms)]
    assert np.median(ratios) > 2.0, ratios


def test_model_randomisation_changes_the_map_and_loses_the_finding(models):
    phantoms, trained, _ = models
    randomised = _randomised(trained)
    films = _films(phantoms)
    correlations = [
        spearmanr(np.abs(_map(trained, p)).ravel(), np.abs(_map(randomised, p)).ravel())[0] for p, _ in films
    ]
    assert np.median(correlations) < 0.5, correlations
    trained_ratio = np.median([_ratio(_map(trained, p), m) for p, m in films])
    random_ratio = np.median([_ratio(_map(randomised, p), m) for p, m in films])
    assert random_ratio < trained_ratio / 2, (trained_ratio, random_ratio)


def test_data_randomisation_changes_the_map(models):
    # Adebayo et al.'s data randomisation: the same training on films whose reports (and labels) were
    # shuffled. Bright drawn structures still draw IG mass (IG weighs gradients by the pixel's distance
    # from the black baseline), so the test is on the maps themselves: they must differ.
    phantoms, trained, shuffled = models
    films = _films(phantoms)
    signed = [spearmanr(_map(trained, p).ravel(), _map(shuffled, p).ravel())[0] for p, _ in films]
    absolute = [spearmanr(np.abs(_map(trained, p)).ravel(), np.abs(_map(shuffled, p)).ravel())[0] for p, _ in films]
    assert np.median(signed) < 0.5, (signed, absolute)
