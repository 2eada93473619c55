"""The fusion model on the tiny-test config: shapes, missing modalities, padding, gradients."""

from __future__ import annotations

import pytest
import torch

from cxrsearch.errors import ModelError
from cxrsearch.model.build import create_model
from cxrsearch.model.config import get_config

LABELS = ("cardiomegaly", "effusion", "normal")
REPORTS = [
    "Heart size is normal. No pleural effusion.",
    "Cardiomegaly with a large right pleural effusion and basilar atelectasis.",
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(get_config("tiny-test"), LABELS).eval()


@pytest.fixture(scope="module")
def inputs(model):
    torch.manual_seed(1)
    batch = model.tokenizer(REPORTS, padding=True, return_tensors="pt")
    return torch.rand(2, 1, 64, 64), batch["input_ids"], batch["attention_mask"]


def _unit(x: torch.Tensor) -> bool:
    return torch.allclose(x.norm(dim=-1), torch.ones(x.shape[0]), atol=1e-5)


def test_image_and_text_shapes(model, inputs):
    pixels, ids, mask = inputs
    out = model(pixels, ids, mask)
    d, tokens = model.joint_dim, ids.shape[1]
    assert out.image_embedding.shape == out.text_embedding.shape == out.joint_embedding.shape == (2, d)
    assert out.logits.shape == (2, len(LABELS))
    assert _unit(out.image_embedding) and _unit(out.text_embedding) and _unit(out.joint_embedding)
    assert out.patch_grid == (8, 8)
    assert len(out.text_to_image_attn) == len(out.image_to_text_attn) == model.config.fusion.num_layers
    heads = model.config.fusion.num_heads
    assert out.text_to_image_attn[0].shape == (2, heads, tokens, 64)
    assert out.image_to_text_attn[0].shape == (2, heads, 64, tokens)
    # attention rows are distributions; padding keys get exactly zero weight
    assert torch.allclose(out.image_to_text_attn[-1].sum(-1), torch.ones(2, heads, 64), atol=1e-5)
    padding = ~mask.bool()
    assert padding.any(), "the two reports should differ in length"
    for attn in out.image_to_text_attn:
        assert attn[padding[:, None, None, :].expand_as(attn)].abs().max() == 0
    assert out.has_image and out.has_text


def test_image_only_and_text_only(model, inputs):
    pixels, ids, mask = inputs
    image_only = model(pixel_values=pixels)
    text_only = model(input_ids=ids, attention_mask=mask)
    paired = model(pixels, ids, mask)
    assert image_only.text_embedding is None and text_only.image_embedding is None
    assert image_only.logits.shape == text_only.logits.shape == (2, len(LABELS))
    assert _unit(image_only.joint_embedding) and _unit(text_only.joint_embedding)
    assert image_only.image_to_text_attn[0].shape[-1] == 1  # the null text token
    assert text_only.patch_grid == (1, 1) and text_only.text_to_image_attn[0].shape[-1] == 1
    # single-modality embeddings are the same vectors as in the paired pass (same space)
    torch.testing.assert_close(image_only.image_embedding, paired.image_embedding)
    torch.testing.assert_close(text_only.text_embedding, paired.text_embedding)
    # and the fused vectors actually depend on what was given
    assert not torch.allclose(image_only.joint_embedding, paired.joint_embedding)
    assert not torch.allclose(text_only.joint_embedding, paired.joint_embedding)


def test_padding_tokens_change_nothing(model, inputs):
    pixels, ids, mask = inputs
    pad = torch.full((2, 7), model.tokenizer.pad_token_id, dtype=ids.dtype)
    longer_ids, longer_mask = torch.cat([ids, pad], 1), torch.cat([mask, torch.zeros_like(pad)], 1)
    for kwargs, longer in (
        (
            {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask},
            {"pixel_values": pixels, "input_ids": longer_ids, "attention_mask": longer_mask},
        ),
        ({"input_ids": ids, "attention_mask": mask}, {"input_ids": longer_ids, "attention_mask": longer_mask}),
    ):
        a, b = model(**kwargs), model(**longer)
        torch.testing.assert_close(a.joint_embedding, b.joint_embedding, atol=1e-6, rtol=0)
        torch.testing.assert_close(a.text_embedding, b.text_embedding, atol=1e-6, rtol=0)
        torch.testing.assert_close(a.logits, b.logits, atol=1e-6, rtol=0)
        torch.testing.assert_close(
            a.image_to_text_attn[-1][..., : ids.shape[1]],
            b.image_to_text_attn[-1][..., : ids.shape[1]],
            atol=1e-6,
            rtol=0,
        )


def test_backward_reaches_every_trainable_part(inputs):
    torch.manual_seed(0)
    model = create_model(get_config("tiny-test"), LABELS).train()
    pixels, ids, mask = inputs
    out = model(pixels, ids, mask)
    loss = out.logits.sum() + (out.image_embedding * out.text_embedding).sum() + out.joint_embedding.sum()
    loss.backward()
    assert all(
        p.grad is not None for p in model.head_parameters() if p is not model.null_image and p is not model.null_text
    )
    assert model.image_tower.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.text_tower.input_embeddings.weight.grad.abs().sum() > 0
    model.zero_grad()
    out = model(input_ids=ids, attention_mask=mask)  # text only: the null image token is trained
    out.logits.sum().backward()
    assert model.null_image.grad is not None and model.null_image.grad.abs().sum() > 0


def test_frozen_towers_get_no_gradient_and_stay_in_eval(inputs):
    model = create_model(get_config("tiny-test"), LABELS).freeze_towers().train()
    assert model.training and not model.image_tower.training and not model.text_tower.training
    pixels, ids, mask = inputs
    image = model.encode_image(pixels)
    text = model.encode_text(ids, mask)
    out = model(image_features=image, text_features=text)  # the frozen-encoder training path
    out.logits.sum().backward()
    assert all(p.grad is None for p in model.tower_parameters())
    assert model.label_head.weight.grad is not None
    assert {id(p) for p in model.tower_parameters()}.isdisjoint(id(p) for p in model.head_parameters())


def test_bad_inputs_raise_model_error(model, inputs):
    pixels, ids, mask = inputs
    with pytest.raises(ModelError, match="image, a text, or both"):
        model()
    with pytest.raises(ModelError, match="same batch size"):
        model(pixels[:1], ids, mask)
    with pytest.raises(ModelError, match=r"\[B, 1, 64, 64\]"):
        model(pixel_values=torch.rand(2, 3, 64, 64))
    with pytest.raises(ModelError, match="no real tokens"):
        model(input_ids=ids, attention_mask=torch.zeros_like(mask))
    with pytest.raises(ModelError, match="distinct labels"):
        create_model(get_config("tiny-test"), ["a", "a"])
