"""The fast query path: a text query runs the checkpoint's text side in numpy (no torch), an image
query loads only the image tower, or with an ONNX export runs it on onnxruntime (no torch); each gives
what the full torch model gives (torch is the reference)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxrsearch.data.openi import load_studies
from cxrsearch.errors import ModelError
from cxrsearch.index import index_studies
from cxrsearch.model.encode import Encoder
from cxrsearch.model.numpy_text import NumpyTextModel, supported
from cxrsearch.search import QuerySpec, search
from cxrsearch.search.modes import bm25_params, encode_queries, query_text
from cxrsearch.search.query import encoder_for
from cxrsearch.store.edge import EdgeStore
from tests.rankings import assert_same_ranking, tie_groups
from tests.search.layout import index_options

QUERIES = [
    "enlarged heart",
    "pleural effusion on the right",
    "no acute cardiopulmonary disease",
    "the lungs are clear. heart size normal",
    "ill-defined opacity in the left lower lobe",
]
HEAVY = ("torch", "transformers", "timm", "torchvision")


@pytest.fixture(scope="module")
def reports(reports_tgz: Path) -> list[str]:
    """200 real report texts (as the model reads them), some longer than the token limit."""
    texts = [study.report_text() for study in load_studies(reports_tgz)[:400]]
    return [text for text in texts if text][:200]


@pytest.fixture(scope="module")
def encoders(tiny_checkpoint: Path) -> tuple[Encoder, Encoder]:
    fast = Encoder(tiny_checkpoint, towers=("text",), runtime="numpy")
    assert fast.numpy and isinstance(fast.model, NumpyTextModel) and supported(fast.checkpoint.info) is None
    return fast, Encoder(tiny_checkpoint)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_numpy_tokenizer_gives_the_torch_paths_ids(encoders, reports):
    fast, torch_side = encoders
    for text in reports[:60] + QUERIES:
        ids, mask = fast.model.tokenize([text])
        reference = torch_side.tokenize([text])
        assert ids.tolist() == reference["input_ids"].tolist()
        assert mask.tolist() == reference["attention_mask"].tolist()


def test_numpy_text_side_matches_torch_on_real_reports(encoders, reports):
    fast, torch_side = encoders
    texts = reports + [query_text(q) for q in QUERIES]
    got, want = fast.encode(texts=texts, batch_size=16), torch_side.encode(texts=texts, batch_size=16)  # padded batches
    assert got.image is None and want.text is not None
    assert _cosine(got.text, want.text).min() >= 0.9999
    assert _cosine(got.joint, want.joint).min() >= 0.9999
    np.testing.assert_allclose(got.probs, want.probs, atol=1e-4)


def _component_hits(indexed, vectors, flt, depth=100):
    return {
        name: indexed.store.search(indexed.collection, name, vectors[query], flt, depth)
        for name, query in (("text", "text"), ("label_probs", "label_probs"), ("image", "text"))
    }


def test_fast_text_search_returns_the_torch_paths_hits(indexed):
    """Every ranking the engine fuses is the torch path's (tie groups as sets); so are the fused hits,
    except where a component holds scores within 1e-5 of each other (RRF then turns a legitimate tie
    order into rank points: those hits may trade places, never leave the list)."""
    bm25 = bm25_params(indexed.store, indexed.collection, "text")
    for text in QUERIES:
        for label in ((), ("normal",)):
            spec = QuerySpec(text=text, all_labels=label, k=10)
            got, want = (
                encode_queries(
                    encoder_for(indexed.store, indexed.collection, indexed.checkpoint, ("text",), rt),
                    "text",
                    [query_text(text)],
                    None,
                    batch_size=1,
                    bm25=bm25,
                )[0]
                for rt in ("numpy", "torch")
            )
            tied = False
            for _name, (fast, reference) in zip(
                ("text", "label_probs", "image"),
                zip(
                    _component_hits(indexed, got, spec.filter()).values(),
                    _component_hits(indexed, want, spec.filter()).values(),
                ),
            ):
                assert_same_ranking(fast, reference, atol=1e-5)
                scores = [hit.score for hit in reference]
                tied |= any(len(group) > 1 for group in tie_groups(scores, 1e-5))
            fast = search(spec, indexed.store, indexed.collection, indexed.checkpoint, runtime="numpy")
            reference = search(spec, indexed.store, indexed.collection, indexed.checkpoint, runtime="torch")
            if tied:
                assert len({h.id for h in fast} & {h.id for h in reference}) >= len(reference) - 2
            else:
                assert_same_ranking(fast, reference)


def test_image_search_with_only_the_image_tower_returns_the_full_models_hits(indexed, openi_images):
    image = openi_images / "png" / "CXR1_1_IM-0001-3001.png"
    spec = QuerySpec(image=image, k=10)
    partial = search(spec, indexed.store, indexed.collection, indexed.checkpoint)
    full = search(spec, indexed.store, indexed.collection, Encoder(indexed.checkpoint))
    assert_same_ranking(partial, full)


@pytest.fixture(scope="module")
def edge_store(tiny_checkpoint: Path, reports_tgz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed embedded store of 40 text-only reports (a subprocess must be able to open it)."""
    root = tmp_path_factory.mktemp("fast-path")
    store = EdgeStore(root / "store")
    try:
        index_studies(index_options(reports_tgz, None, None, root / "failures", limit=40), store, tiny_checkpoint)
    finally:
        store.close()
    return root / "store"


def _heavy_imports_of_search(args: list[str], heavy: tuple[str, ...] = HEAVY) -> str:
    """Run ``cxrsearch search ARGS --json`` in a fresh interpreter; which of ``heavy`` it imported."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cxrsearch.cli.main import app\n"
        f"result = CliRunner().invoke(app, ['search', *{args!r}, '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert '\"study_id\"' in result.output, result.output\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return "".join(done.stdout.strip().splitlines()[-1:])


def test_a_text_search_imports_no_torch_timm_or_torchvision(edge_store, tiny_checkpoint):
    args = ["--text", "enlarged heart", "--label", "normal", "-k", "3", "--store", str(edge_store)]
    assert _heavy_imports_of_search(args) == ""


def test_a_like_search_imports_no_numpy(edge_store):
    """``--like`` loads no model and handles no vector: the engine reads the example's own (numpy's
    import alone is a fifth of such a query's start-up, docs/performance.md)."""
    args = ["--like", "CXR1", "--label", "normal", "-k", "3", "--store", str(edge_store)]
    assert _heavy_imports_of_search(args, (*HEAVY, "numpy", "PIL", "pydicom")) == ""


# ---------------------------------------------------------------- image queries on onnxruntime


@pytest.fixture(scope="module")
def onnx_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny checkpoint (same weights, same fingerprint) with its image side exported."""
    import shutil

    from cxrsearch.model.checkpoint import export_image_side
    from cxrsearch.model.onnx_image import ONNX_FILE, RECORD_FILE

    copy = tmp_path_factory.mktemp("onnx") / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    assert export_image_side(copy) == copy / ONNX_FILE
    record = json.loads((copy / RECORD_FILE).read_text())
    assert record["checked"]["joint_cosine"] >= 0.9999
    return copy


def _films(images_dir: Path) -> list:
    """Every real radiograph of the shared data (PNG, JPEG, DICOM incl. MONOCHROME1 and JPEG-compressed)."""
    from cxrsearch.image import decode_image

    paths = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in (".png", ".dcm", ".jpg", ".jpeg"))
    assert len(paths) >= 3, images_dir
    return [decode_image(p) for p in paths]


def test_onnx_image_side_matches_torch_on_real_radiographs(onnx_checkpoint, images_dir):
    from cxrsearch.model.onnx_image import OnnxImageModel

    fast = Encoder(onnx_checkpoint, towers=("image",), runtime="auto")
    assert fast.onnx and isinstance(fast.model, OnnxImageModel)
    films = _films(images_dir)
    got, want = fast.encode(images=films, batch_size=4), Encoder(onnx_checkpoint).encode(images=films, batch_size=4)
    assert _cosine(got.image, want.image).min() >= 0.9999
    assert _cosine(got.joint, want.joint).min() >= 0.9999
    assert np.abs(got.probs - want.probs).max() <= 1e-4


def test_onnx_image_search_returns_the_torch_paths_hits(indexed, onnx_checkpoint, openi_images):
    """Same hits as torch; hits whose fused scores tie (RRF rank points) may trade places, not leave."""
    image = openi_images / "png" / "CXR1_1_IM-0001-3001.png"
    for label in ((), ("normal",)):
        spec = QuerySpec(image=image, all_labels=label, k=10)
        fast = search(spec, indexed.store, indexed.collection, onnx_checkpoint, runtime="auto")
        reference = search(spec, indexed.store, indexed.collection, onnx_checkpoint, runtime="torch")
        assert [round(h.score, 4) for h in fast] == [round(h.score, 4) for h in reference]
        assert {h.id for h in fast} == {h.id for h in reference}


def test_an_export_of_other_weights_is_ignored(onnx_checkpoint, tmp_path):
    import shutil

    from cxrsearch.model.checkpoint import load_checkpoint
    from cxrsearch.model.onnx_image import RECORD_FILE

    copy = tmp_path / "ckpt"
    shutil.copytree(onnx_checkpoint, copy)
    record = json.loads((copy / RECORD_FILE).read_text())
    (copy / RECORD_FILE).write_text(json.dumps({**record, "fingerprint": "0" * 64}))
    assert type(load_checkpoint(copy, towers=("image",), runtime="auto").model).__name__ == "FusionModel"
    with pytest.raises(ModelError, match="no ONNX export of these weights"):
        load_checkpoint(copy, towers=("image",), runtime="onnx")


def test_exporting_a_text_only_checkpoint_is_refused(text_only_checkpoint):
    from cxrsearch.model.checkpoint import export_image_side

    with pytest.raises(ModelError, match="reports only"):
        export_image_side(text_only_checkpoint)


def test_an_image_search_with_an_export_imports_no_torch_timm_or_torchvision(
    onnx_checkpoint, openi_images, reports_tgz, tmp_path
):
    store = EdgeStore(tmp_path / "store")
    try:
        index_studies(
            index_options(reports_tgz, openi_images, None, tmp_path / "failures", limit=12), store, onnx_checkpoint
        )
    finally:
        store.close()
    image = openi_images / "png" / "CXR1_1_IM-0001-3001.png"
    assert _heavy_imports_of_search(["--image", str(image), "-k", "3", "--store", str(tmp_path / "store")]) == ""


def test_cli_export_onnx_and_train_with_radiographs_export_the_image_side(
    tiny_checkpoint, text_only_checkpoint, reports_tgz, training_images, tmp_path
):
    import shutil

    from typer.testing import CliRunner

    from cxrsearch.cli.main import app
    from cxrsearch.model.checkpoint import read_checkpoint_info
    from cxrsearch.model.onnx_image import ONNX_FILE, find_export

    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    done = CliRunner().invoke(app, ["models", "export-onnx", str(copy)])
    assert done.exit_code == 0, done.output
    assert find_export(read_checkpoint_info(copy)) == copy / ONNX_FILE
    refused = CliRunner().invoke(app, ["models", "export-onnx", str(text_only_checkpoint)])
    assert refused.exit_code == 1 and "reports only" in refused.output and len(refused.output.splitlines()) == 1

    out = tmp_path / "trained"
    args = ["train", "--data", str(reports_tgz), "--config", "tiny-test", "--out", str(out), "--images"]
    args += [str(training_images), "--epochs", "1", "--limit", "60", "--batch-size", "16"]
    trained = CliRunner().invoke(app, args)
    assert trained.exit_code == 0, trained.output
    assert "image queries run without torch" in trained.output
    assert find_export(read_checkpoint_info(out)) == out / ONNX_FILE


def test_a_damaged_export_is_one_error_naming_the_file_and_the_way_back(onnx_checkpoint, tmp_path):
    import shutil

    from cxrsearch.model.checkpoint import load_checkpoint
    from cxrsearch.model.onnx_image import ONNX_FILE

    copy = tmp_path / "ckpt"
    shutil.copytree(onnx_checkpoint, copy)
    (copy / ONNX_FILE).write_bytes(b"not a protobuf" * 100)
    with pytest.raises(ModelError, match="export-onnx") as caught:
        load_checkpoint(copy, towers=("image",), runtime="auto")
    assert caught.value.path == str(copy / ONNX_FILE)


def test_an_export_the_exporter_cannot_make_is_a_model_error_and_train_still_succeeds(
    tiny_checkpoint, tmp_path, monkeypatch
):
    import shutil

    import torch

    from cxrsearch.cli.train import _export_image_side
    from cxrsearch.model.checkpoint import export_image_side
    from cxrsearch.model.onnx_image import ONNX_FILE

    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX opset version 17 is not supported")

    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(ModelError, match="the ONNX export failed"):
        export_image_side(copy)
    assert not (copy / ONNX_FILE).exists() and not list(copy.glob("*.tmp-*"))
    notice = _export_image_side(copy)  # what `cxrsearch train` prints after a finished run
    assert notice is not None and notice.startswith("image queries will run on torch")


def test_explain_refuses_a_torch_free_encoder(indexed):
    from cxrsearch.explain.explain import explain
    from cxrsearch.explain.request import ExplainRequest

    fast = Encoder(indexed.checkpoint, towers=("text",), runtime="numpy")
    hit = indexed.store.search(indexed.collection, "text", np.ones(fast.config.fusion.joint_dim, np.float32), None, 1)
    with pytest.raises(ModelError, match="explain needs the torch model"):
        explain(
            ExplainRequest(hit=hit[0].id, collection=indexed.collection, text="enlarged heart"), indexed.store, fast
        )


def test_mapped_weights_equal_the_file_and_a_bad_header_is_refused(tmp_path):
    from safetensors.numpy import save_file

    from cxrsearch.model.numpy_text import _mapped_tensors

    tensors = {"text_tower.a": np.arange(12, dtype=np.float32).reshape(3, 4), "fusion.b": np.ones(5, np.float32)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    mapped = _mapped_tensors(path)
    assert set(mapped) == set(tensors) and all(np.array_equal(mapped[k], v) for k, v in tensors.items())
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    header["fusion.b"]["data_offsets"] = [0, 10**6]  # past the end of the file
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + size :])
    with pytest.raises(ModelError, match="fusion.b"):
        _mapped_tensors(path)
    path.write_bytes((10**12).to_bytes(8, "little") + raw[8:])
    with pytest.raises(ModelError, match="header"):
        _mapped_tensors(path)
