"""Losses: focal/BCE against hand-computed values; contrastive loss never treats duplicates as negatives."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrsearch.errors import ConfigError
from cxrsearch.model.losses import (
    FusionLoss,
    LossConfig,
    alignment_loss,
    bce_loss,
    contrastive_loss,
    focal_loss,
    label_supcon_loss,
    same_group_mask,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _focal_by_hand(x: float, y: int, alpha: float, gamma: float) -> float:
    p = _sigmoid(x)
    p_t = p if y == 1 else 1.0 - p
    alpha_t = alpha if y == 1 else 1.0 - alpha
    return -alpha_t * (1.0 - p_t) ** gamma * math.log(p_t)


# (logit, target, alpha, gamma, FL written out by hand)
#   x=2,  y=1: p_t = 0.880797, -0.25 * 0.119203^2 * ln 0.880797 = 0.000450891
#   x=2,  y=0: p_t = 0.119203, -0.75 * 0.880797^2 * ln 0.119203 = 1.237559
#   x=-1, y=1: p_t = 0.268941, -0.25 * 0.731059^2 * ln 0.268941 = 0.175467
#   x=0,  y=0: p_t = 0.5,      -0.75 * 0.5^2      * ln 0.5      = 0.129965
#   x=1,  y=0, alpha=0.5, gamma=0: -0.5 * ln(1 - 0.731059)      = 0.656631
HAND_CASES = [
    (2.0, 1, 0.25, 2.0, 0.000450891),
    (2.0, 0, 0.25, 2.0, 1.237559),
    (-1.0, 1, 0.25, 2.0, 0.175467),
    (0.0, 0, 0.25, 2.0, 0.129965),
    (1.0, 0, 0.5, 0.0, 0.656631),
]


@pytest.mark.parametrize(("x", "y", "alpha", "gamma", "expected"), HAND_CASES)
def test_focal_loss_matches_hand_computed_values(x, y, alpha, gamma, expected):
    assert _focal_by_hand(x, y, alpha, gamma) == pytest.approx(expected, rel=1e-5)
    got = focal_loss(torch.tensor([[x]]), torch.tensor([[float(y)]]), alpha=alpha, gamma=gamma)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_focal_loss_is_mean_over_cells_and_uses_p_t_not_p():
    xs = torch.tensor([[2.0, 2.0], [-1.0, 0.0]])
    ys = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    expected = np.mean([c[4] for c in HAND_CASES[:4]])
    assert float(focal_loss(xs, ys, 0.25, 2.0)) == pytest.approx(expected, rel=1e-5)
    # the wrong "(1 - p)^gamma for every target" variant gives a different value for negatives
    p = _sigmoid(2.0)
    wrong_negative = -0.75 * (1 - p) ** 2 * math.log(1 - p)
    assert abs(wrong_negative - HAND_CASES[1][4]) > 1.0


def test_focal_loss_without_alpha_and_gamma_zero_is_bce():
    xs = torch.tensor([[0.3, -2.0, 4.0]])
    ys = torch.tensor([[1.0, 1.0, 0.0]])
    assert float(focal_loss(xs, ys, alpha=None, gamma=0.0)) == pytest.approx(float(bce_loss(xs, ys)), rel=1e-6)


def test_bce_matches_hand_computed_values():
    # -ln sigmoid(2) = ln(1 + e^-2) = 0.126928 ; -ln(1 - sigmoid(-1)) = ln(1 + e^-1) = 0.313262
    got = bce_loss(torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]]))
    assert float(got) == pytest.approx((0.126928 + 0.313262) / 2, rel=1e-5)


def test_losses_are_stable_for_extreme_logits():
    xs = torch.tensor([[100.0, -100.0, 100.0, -100.0]], requires_grad=True)
    ys = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    loss = focal_loss(xs, ys, 0.25, 2.0) + bce_loss(xs, ys)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(xs.grad).all()
    # fully wrong cells: focal = alpha_t * 100 (the (1 - p_t)^gamma factor is 1)
    assert float(focal_loss(xs.detach()[:, :2], ys[:, :2], 0.25, 2.0)) == pytest.approx(
        (0.75 * 100 + 0.25 * 100) / 2, rel=1e-4
    )


def test_same_group_mask_marks_identical_text_or_identical_labels():
    mask = same_group_mask(
        ["no acute disease", "no acute disease", "cardiomegaly", "effusion"],
        [(), (), ("Cardiomegaly",), ("Cardiomegaly",)],
    )
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1)


def test_contrastive_loss_equals_infonce_with_duplicate_negative_removed():
    images = _unit([1.0, 0.2, 0.0], [0.9, 0.1, 0.3], [0.0, 1.0, 0.5])
    texts = _unit([1.0, 0.0, 0.1], [0.8, 0.3, 0.2], [0.1, 0.9, 0.4])
    same = same_group_mask(["normal", "normal", "effusion"])  # studies 0 and 1: identical reports
    scale = 10.0
    got = float(contrastive_loss(images, texts, scale, same))

    logits = scale * (images @ texts.T).numpy()
    allowed = ~(same.numpy() & ~np.eye(3, dtype=bool))

    def ce(matrix):
        return np.mean([-(matrix[i, i] - np.log(np.exp(matrix[i][allowed[i]]).sum())) for i in range(3)])

    assert got == pytest.approx(0.5 * (ce(logits) + ce(logits.T)), rel=1e-9)
    assert got != pytest.approx(float(contrastive_loss(images, texts, scale, None)), rel=1e-3)


def test_contrastive_gradient_does_not_push_duplicates_apart():
    images = _unit([1.0, 0.2, 0.0], [0.9, 0.1, 0.3], [0.0, 1.0, 0.5]).requires_grad_(True)
    same = same_group_mask(["normal", "normal", "effusion"])

    def grad_of_image0(text1):
        texts = torch.stack([_unit([1.0, 0.0, 0.1])[0], text1, _unit([0.1, 0.9, 0.4])[0]])
        images.grad = None
        contrastive_loss(images, texts, 10.0, same).backward()
        return images.grad[0].clone()

    # with the duplicate masked, study 0's image gradient does not depend on study 1's text at all
    a = grad_of_image0(_unit([0.8, 0.3, 0.2])[0])
    b = grad_of_image0(_unit([-0.5, 0.1, 0.9])[0])
    assert torch.allclose(a, b, atol=1e-12)
    # symmetrically, study 1's text gradient does not depend on study 0's image (never its negative)
    texts = _unit([1.0, 0.0, 0.1], [0.8, 0.3, 0.2], [0.1, 0.9, 0.4]).requires_grad_(True)

    def grad_of_text1(image0):
        imgs = torch.cat([image0[None], images.detach()[1:]])
        return torch.autograd.grad(contrastive_loss(imgs, texts, 10.0, same), texts)[0][1]

    assert torch.allclose(
        grad_of_text1(_unit([1.0, 0.2, 0.0])[0]), grad_of_text1(_unit([0.0, -1.0, 0.2])[0]), atol=1e-12
    )
    # without the mask it does (the duplicate would be pushed apart)
    unmasked = [
        torch.autograd.grad(contrastive_loss(torch.cat([i0[None], images.detach()[1:]]), texts, 10.0, None), texts)[0][
            1
        ]
        for i0 in (_unit([1.0, 0.2, 0.0])[0], _unit([0.0, -1.0, 0.2])[0])
    ]
    assert not torch.allclose(*unmasked, atol=1e-6)


def test_label_supcon_pulls_same_label_texts_together_and_skips_loners():
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    close = _unit([1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9])
    mixed = _unit([1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9])
    assert float(label_supcon_loss(close, targets)) < float(label_supcon_loss(mixed, targets))
    disjoint = torch.eye(3)
    assert float(label_supcon_loss(_unit([1.0, 0.0], [0.0, 1.0], [1.0, 1.0]), disjoint)) == 0.0
    # two unlabelled studies (empty label sets: mixed findings outside the vocabulary) are not one
    # class: neither is an anchor, so a batch of them and a loner has nothing to learn
    unlabelled = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    assert float(label_supcon_loss(_unit([1.0, 0.0], [-1.0, 0.1], [0.0, 1.0]), unlabelled)) == 0.0
    # ... while two studies sharing the explicit "normal" label are pulled together
    normals = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    apart = label_supcon_loss(_unit([1.0, 0.0], [-1.0, 0.1], [0.0, 1.0], [0.1, 1.0]), normals)
    together = label_supcon_loss(_unit([1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]), normals)
    assert float(together) < float(apart)


def test_alignment_loss_is_zero_when_joint_equals_each_modality():
    emb = _unit([1.0, 2.0], [3.0, -1.0])
    assert float(alignment_loss(emb, emb, None)) == pytest.approx(0.0, abs=1e-12)
    assert float(alignment_loss(emb, -emb)) == pytest.approx(2.0)


def _output(image, text, joint, logits):
    return SimpleNamespace(image_embedding=image, text_embedding=text, joint_embedding=joint, logits=logits)


def test_fusion_loss_text_only_skips_contrastive_and_trains():
    torch.manual_seed(0)
    text = F.normalize(torch.randn(4, 8), dim=-1).requires_grad_(True)
    joint = F.normalize(torch.randn(4, 8), dim=-1).requires_grad_(True)
    logits = torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    loss = FusionLoss(LossConfig())
    parts = loss(_output(None, text, joint, logits), targets)
    assert parts.contrastive is None and parts.alignment is not None and parts.text_supcon is not None
    parts.total.backward()
    assert text.grad is not None and joint.grad is not None and logits.grad is not None
    assert loss.log_scale.grad is None  # temperature untouched without images


def test_fusion_loss_with_images_learns_clamped_temperature():
    torch.manual_seed(0)
    emb = [F.normalize(torch.randn(4, 8), dim=-1) for _ in range(3)]
    loss = FusionLoss(LossConfig(max_logit_scale=50.0))
    parts = loss(_output(emb[0], emb[1], emb[2], torch.randn(4, 3)), torch.zeros(4, 3))
    assert parts.contrastive is not None
    parts.total.backward()
    assert loss.log_scale.grad is not None
    with torch.no_grad():
        loss.log_scale.fill_(10.0)
    assert float(loss.logit_scale().detach()) == pytest.approx(50.0)
    fixed = FusionLoss(LossConfig(learn_temperature=False))
    assert not any(p.requires_grad for p in fixed.parameters())


@pytest.mark.parametrize(
    "bad",
    [
        {"focal_alpha": 1.5},
        {"bce_weight": -1.0},
        {"focal_gamma": -0.1},
        {"init_temperature": 0.0},
        {"max_logit_scale": 2.0},
    ],
)
def test_loss_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError):
        LossConfig(**bad)
