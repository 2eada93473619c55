"""The ``hub`` tower source end to end, offline: a loopback Hub (``tests/model/fake_hub.py``) serves a
tiny random BERT and a tiny timm Swin the way the Hub serves files, and the product's own
``snapshot_download`` / ``from_pretrained`` / safetensors calls fetch them: download, cache reuse,
the resolved commit recorded in the checkpoint, wrong revisions refused in one line, offline mode.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cxrsearch.errors import ModelError
from cxrsearch.model.build import create_model
from cxrsearch.model.checkpoint import read_checkpoint_info, save_checkpoint
from cxrsearch.model.config import ModelConfig, get_config
from cxrsearch.model.image_tower import build_image_tower
from cxrsearch.model.text_tower import build_text_tower
from tests.model.fake_hub import FakeHub, serving_hub, use_hub

LABELS = ("cardiomegaly", "effusion", "normal")
BERT, SWIN = "cxrsearch-tests/tiny-bert", "cxrsearch-tests/tiny-swin"
TINY_SWIN = {"img_size": 64, "embed_dim": 16, "depths": (1, 1), "num_heads": (2, 4), "window_size": 4}
UNWANTED = {"pytorch_model.bin": b"\x80\x04 pickled: never fetched", "README.md": b"# tiny\n"}


def _read_dir(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tiny_bert(folder: Path, seed: int) -> dict[str, bytes]:
    from transformers import BertConfig, BertModel

    from cxrsearch.model.text_tower import builtin_tokenizer

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    builtin_tokenizer("bert-base-uncased").save_pretrained(folder)
    return {**_read_dir(folder), **UNWANTED}


def _tiny_swin(folder: Path, seed: int) -> dict[str, bytes]:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=0, **TINY_SWIN)
    folder.mkdir(parents=True)
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "swin_tiny_patch4_window7_224", "num_classes": 0}))
    return {**_read_dir(folder), **UNWANTED}


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Repository contents, made once: two commits of the BERT (seeds 0 and 1), one of the Swin."""
    root = tmp_path_factory.mktemp("repos")
    return {
        "bert": _tiny_bert(root / "bert", 0),
        "bert-v2": _tiny_bert(root / "bert-v2", 1),
        "swin": _tiny_swin(root / "swin", 0),
    }


@pytest.fixture
def hub(repos, tmp_path, monkeypatch) -> FakeHub:
    with serving_hub() as server:
        server.publish(BERT, repos["bert"])
        server.publish(SWIN, repos["swin"])
        use_hub(monkeypatch, server.url, tmp_path / "hf")
        yield server


def _hub_config(text: str = f"hub:{BERT}", image: str = f"hub:{SWIN}") -> ModelConfig:
    config = get_config("tiny-test")
    config = dataclasses.replace(
        config, text=dataclasses.replace(config.text, tokenizer=None)
    )  # tokenizer from the repo
    return config.with_text_source(text).with_image_source(image)


def _weight(repo_files: dict[str, bytes], suffix: str) -> torch.Tensor:
    from safetensors.torch import load

    return next(v for k, v in load(repo_files["model.safetensors"]).items() if k.endswith(suffix))


def test_download_records_the_resolved_commit_and_reuses_the_cache(hub, repos, tmp_path):
    main_bert, main_swin = hub.branches[BERT]["main"], hub.branches[SWIN]["main"]
    config = _hub_config()
    assert config.text.revision is None and config.image.revision is None  # "main": the Hub resolves it
    model = create_model(config, LABELS)
    assert model.text_tower.weights_commit == main_bert and model.image_tower.weights_commit == main_swin
    fetched = {path.rsplit("/", 1)[-1] for path in hub.downloads()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= fetched and not fetched & set(UNWANTED)
    assert f"/api/models/{BERT}/revision/main" in [path for _, path in hub.requests]
    assert torch.equal(model.text_tower.input_embeddings.weight, _weight(repos["bert"], "word_embeddings.weight"))
    assert torch.equal(
        model.image_tower.backbone.patch_embed.proj.weight, _weight(repos["swin"], "patch_embed.proj.weight")
    )

    info = save_checkpoint(tmp_path / "ckpt", model, thresholds=[0.5, 0.5, 0.5])
    doc = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert doc["model"]["text"]["revision"] == main_bert and doc["model"]["image"]["revision"] == main_swin
    assert (
        info.config.text.hub_id == BERT and read_checkpoint_info(tmp_path / "ckpt").config.image.revision == main_swin
    )

    hub.requests.clear()  # the cache answers: not one request
    again = build_text_tower(config)
    assert hub.requests == [] and again.weights_commit == main_bert

    second = hub.publish(BERT, repos["bert-v2"])  # main moves on the Hub
    assert build_text_tower(config).weights_commit == main_bert  # the cached main is used, and recorded as such
    pinned = build_text_tower(_hub_config(text=f"hub:{BERT}@{second}"))
    assert pinned.weights_commit == second
    assert torch.equal(pinned.input_embeddings.weight, _weight(repos["bert-v2"], "word_embeddings.weight"))


def _one_line_error(config: ModelConfig, build=build_text_tower) -> str:
    with pytest.raises(ModelError) as err:
        build(config)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_revision_the_hub_does_not_have_is_refused_clearly(hub):
    for revision in ("0" * 40, "no-such-branch"):
        message = _one_line_error(_hub_config(text=f"hub:{BERT}@{revision}"))
        assert f"has no revision '{revision}' of {BERT}" in message and hub.url in message
        assert f"--text-encoder hub:{BERT}@main" in message
    message = _one_line_error(_hub_config(image=f"hub:{SWIN}@{'1' * 40}"), build_image_tower)
    assert f"--image-encoder hub:{SWIN}@main" in message
    assert "has no repository cxrsearch-tests/nothing" in _one_line_error(
        _hub_config(text="hub:cxrsearch-tests/nothing")
    )


def test_the_packaged_configs_download_main_and_refuse_the_old_unverified_pin(hub, repos):
    """What issue 17 feared, played against the loopback Hub: the old pin fails in one clear line;
    the config as shipped now (``main``) downloads and records the commit."""
    clinical = get_config("swin-clinicalbert").text
    main = hub.publish(clinical.hub_id, repos["bert"])
    assert build_text_tower(get_config("swin-clinicalbert")).weights_commit == main
    old = dataclasses.replace(clinical, revision="ce9e77baa79d882eeb7fc51b8e1dd580ea918a1b")
    message = _one_line_error(dataclasses.replace(get_config("swin-clinicalbert"), text=old))
    assert "ce9e77baa79d882eeb7fc51b8e1dd580ea918a1b" in message
    assert "--text-encoder hub:emilyalsentzer/Bio_ClinicalBERT@main" in message


def test_offline_mode_is_served_from_the_cache(hub, tmp_path, monkeypatch):
    main_bert = hub.branches[BERT]["main"]
    build_text_tower(_hub_config())  # online: fills the cache
    hub.requests.clear()
    use_hub(monkeypatch, "http://127.0.0.1:9", tmp_path / "hf", offline=True)  # HF_HUB_OFFLINE=1, nothing listening
    assert build_text_tower(_hub_config()).weights_commit == main_bert
    assert build_text_tower(_hub_config(text=f"hub:{BERT}@{main_bert}")).weights_commit == main_bert
    assert hub.requests == []
    message = _one_line_error(_hub_config(image=f"hub:{SWIN}"), build_image_tower)  # never downloaded
    assert "not in the Hugging Face cache and HF_HUB_OFFLINE is set" in message and f"{SWIN}@main" in message


def test_a_checkpoint_trained_from_hub_towers_names_their_commits(hub, reports_tgz, tmp_path):
    from typer.testing import CliRunner

    from cxrsearch.cli.main import app
    from cxrsearch.model.train import TrainOptions, train

    options = TrainOptions(
        data=reports_tgz,
        config="tiny-test",
        out=tmp_path / "run",
        epochs=1,
        batch_size=32,
        lr=3e-3,
        limit=100,
        seed=0,
        finding_sentences=False,
        text_encoder=f"hub:{BERT}",
        image_encoder=f"hub:{SWIN}",
    )  # weights from the Hub, builtin tokenizer
    result = train(options)
    shown = CliRunner().invoke(app, ["models", "info", str(result.checkpoint), "--json"])
    assert shown.exit_code == 0, shown.output
    towers = json.loads(shown.stdout)["towers"]
    assert (
        towers["text"]["commit"] == hub.branches[BERT]["main"]
        and towers["image"]["commit"] == hub.branches[SWIN]["main"]
    )
    assert towers["text"]["source"] == "hub" and towers["text"]["hub_id"] == BERT
