"""The image side learns: a few epochs of the real ``train()`` on phantoms, with a random image tower.

A small phantom set (64 x 64 films) trains a quarter-width ResNet-18 from random weights with the
reports. The contrastive (image <-> report) and classification losses must fall, and afterwards a
film's embedding must be closer to its own report's than to reports with other findings. A broken
image gradient path (a frozen or detached tower, images never reaching the loss) or a broken pairing
(films matched with the wrong reports) leaves paired and unpaired cosines equal.
"""

from __future__ import annotations

import numpy as np
import pytest

from cxrsearch.data.phantoms import make_phantoms
from tests.phantom_training import SIZE, phantom_config, train_on_phantoms


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom-learning")
    phantoms = make_phantoms(
        root / "data",
        96,
        seed=1,
        size=SIZE,
        splits=(0.75, 0.125, 0.125),
        normal_fraction=0.25,
        findings=("cardiomegaly", "pleural effusion", "hyperinflation"),
    )
    config = phantom_config(root, "phantom-test")
    result = train_on_phantoms(phantoms.root, phantoms.images_dir, config, root / "ckpt")
    return phantoms, result


def test_contrastive_and_label_losses_fall(trained):
    _, result = trained
    first, last = result.history[0], result.history[-1]
    assert result.n_train_with_images == result.n_train
    assert last.contrastive < 0.9 * first.contrastive
    assert last.classification < 0.7 * first.classification


def test_films_sit_closer_to_their_own_report_than_to_other_findings(trained):
    from cxrsearch.image.decode import decode_image
    from cxrsearch.model.encode import Encoder

    phantoms, result = trained
    encoder = Encoder(result.checkpoint)
    studies = [s for s in phantoms.studies if s.split == "train"]
    images = encoder.encode(images=[decode_image(phantoms.root / s.image) for s in studies]).image
    texts = encoder.encode(texts=[f"{s.findings_text} {s.impression}" for s in studies]).text
    cosine = images @ texts.T
    differ = np.array([[a.labels != b.labels for b in studies] for a in studies])
    paired, unpaired = float(np.diag(cosine).mean()), float(cosine[differ].mean())
    assert paired > unpaired + 0.1, (paired, unpaired)
