"""Query-side loading: one tower only, and the verification stamp (hash once, trust while unchanged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cxrsearch.errors import ModelError
from cxrsearch.model import checkpoint as checkpoint_module
from cxrsearch.model.build import create_model
from cxrsearch.model.checkpoint import STAMP_FILE, load_checkpoint, save_checkpoint, stamp_paths
from cxrsearch.model.config import get_config
from cxrsearch.model.encode import Encoder

LABELS = ("cardiomegaly", "effusion", "normal")
REPORTS = ["Heart size is normal. No pleural effusion.", "Cardiomegaly. Large right effusion.", "Clear lungs."]


def _films() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.random((90, 70), dtype=np.float32), rng.random((64, 64), dtype=np.float32)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(get_config("tiny-test"), LABELS)
    path = tmp_path_factory.mktemp("partial") / "tiny"
    save_checkpoint(path, model, thresholds=[0.5, 0.5, 0.5])
    return path


def test_text_only_load_gives_the_full_models_text_outputs(folder):
    full = Encoder(folder).encode(texts=REPORTS)
    text = Encoder(folder, towers=("text",))
    assert text.towers == ("text",) and text.model.image_tower is None
    assert not any(k.startswith("image_tower.") for k in text.model.state_dict())
    out = text.encode(texts=REPORTS)
    assert out.image is None
    np.testing.assert_allclose(out.text, full.text, atol=1e-5)
    np.testing.assert_allclose(out.joint, full.joint, atol=1e-5)
    np.testing.assert_allclose(out.probs, full.probs, atol=1e-5)
    with pytest.raises(ModelError, match="without its image tower"):
        text.encode(images=_films())


def test_image_only_load_gives_the_full_models_image_outputs(folder):
    full = Encoder(folder).encode(images=_films())
    image = Encoder(folder, towers=("image",))
    assert image.towers == ("image",) and image.model.text_tower is None
    out = image.encode(images=_films())
    np.testing.assert_allclose(out.image, full.image, atol=1e-5)
    np.testing.assert_allclose(out.joint, full.joint, atol=1e-5)
    np.testing.assert_allclose(out.probs, full.probs, atol=1e-5)
    with pytest.raises(ModelError, match="without its text tower"):
        image.encode(texts=REPORTS)
    with pytest.raises(ModelError, match="without its text tower"):
        image.tokenize(REPORTS)


def test_unknown_tower_names_are_refused(folder):
    for towers in ((), ("audio",), ("text", "text", "image", "x")):
        with pytest.raises(ModelError, match="towers must be"):
            load_checkpoint(folder, towers=towers)


def test_a_text_only_load_never_imports_timm(folder):
    code = (
        "import sys\n"
        "from cxrsearch.model.checkpoint import load_checkpoint\n"
        f"ckpt = load_checkpoint({str(folder)!r}, towers=('text',))\n"
        "assert ckpt.model.image_tower is None\n"
        "print(','.join(m for m in ('timm', 'timm.models') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


# ---------------------------------------------------------------- the verification stamp


def _fresh(folder, tmp_path):
    model = load_checkpoint(folder).model
    copy = tmp_path / "copy"
    save_checkpoint(copy, model, thresholds=[0.5, 0.5, 0.5])
    return copy


def test_first_load_stamps_and_later_loads_skip_the_hash(folder, tmp_path, monkeypatch):
    copy = _fresh(folder, tmp_path)
    assert not (copy / STAMP_FILE).exists()
    load_checkpoint(copy)
    stamp = json.loads((copy / STAMP_FILE).read_text())
    st = (copy / "model.safetensors").stat()
    assert stamp["size"] == st.st_size and stamp["mtime_ns"] == st.st_mtime_ns and stamp["inode"] == st.st_ino
    assert stamp["fingerprint"] == json.loads((copy / "config.json").read_text())["fingerprint"]

    def no_hash(path):
        raise AssertionError("an unchanged, stamped checkpoint was hashed again")

    monkeypatch.setattr(checkpoint_module, "file_sha256", no_hash)
    load_checkpoint(copy, towers=("text",))


def test_an_edit_after_stamping_is_still_caught(folder, tmp_path):
    copy = _fresh(folder, tmp_path)
    load_checkpoint(copy)  # verified and stamped
    weights = copy / "model.safetensors"
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes, written in place
    with open(weights, "r+b") as handle:
        handle.write(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with the old mtime put back
    with pytest.raises(ModelError, match="do not match"):
        load_checkpoint(copy)
    with pytest.raises(ModelError, match="do not match"):
        load_checkpoint(copy, towers=("text",))


def test_a_replaced_file_is_verified_again(folder, tmp_path):
    copy = _fresh(folder, tmp_path)
    load_checkpoint(copy)
    weights = copy / "model.safetensors"
    torn = weights.read_bytes()
    weights.unlink()
    weights.write_bytes(torn[: len(torn) // 2] + bytes(len(torn) - len(torn) // 2))  # torn: same size, new inode
    with pytest.raises(ModelError, match="do not match"):
        load_checkpoint(copy)


def test_a_read_only_checkpoint_is_stamped_in_the_cache_dir(folder, tmp_path, monkeypatch):
    copy = _fresh(folder, tmp_path)
    write = checkpoint_module._write_stamp
    monkeypatch.setattr(
        checkpoint_module, "_write_stamp", lambda path, stamp: path.parent != copy and write(path, stamp)
    )
    load_checkpoint(copy)
    beside, cached = stamp_paths(copy / "model.safetensors")
    assert not beside.exists() and cached.is_file()
    assert str(cached).startswith(os.environ["CXRSEARCH_CACHE"])
    monkeypatch.setattr(checkpoint_module, "file_sha256", lambda path: pytest.fail("hashed again"))
    load_checkpoint(copy)
