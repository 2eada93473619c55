"""The fast query path: a text query runs the checkpoint's text side in numpy (no torch), an image
query loads only the image tower; both give what the full torch model gives (torch is the reference)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxrsearch.data.openi import load_studies
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


def test_a_text_search_imports_no_torch_timm_or_torchvision(edge_store, tiny_checkpoint):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cxrsearch.cli.main import app\n"
        f"args = ['search', '--text', 'enlarged heart', '--label', 'normal', '-k', '3', '--json', '--store', {str(edge_store)!r}]\n"
        "result = CliRunner().invoke(app, args)\n"
        "assert result.exit_code == 0, result.output\n"
        "assert '\"study_id\"' in result.output, result.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip().splitlines()[-1:] in ([], [""]), f"a text search imported {done.stdout.strip()}"
