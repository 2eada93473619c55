"""Shared fixtures.

- ``_isolate_user_paths`` (autouse): every user path (data, cache, store, models, outputs, HOME, XDG)
  points into the test's tmp dir, so no test reads or writes a real user directory.
- ``real_data``: the read-only real data folder (``CXRSEARCH_TEST_DATA``, default ``../shared/data``
  from the repo root); tests using it skip with a clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _real_data_root() -> Path:
    return Path(os.environ.get("CXRSEARCH_TEST_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(autouse=True)
def _isolate_user_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "_home"
    for name, sub in {
        "CXRSEARCH_DATA": "data",
        "CXRSEARCH_CACHE": "cache",
        "CXRSEARCH_STORE": "store",
        "CXRSEARCH_MODELS": "models",
        "CXRSEARCH_OUTPUT": "outputs",
    }.items():
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("CXRSEARCH_QDRANT_URL", raising=False)
    monkeypatch.delenv("CXRSEARCH_QDRANT_API_KEY", raising=False)
    monkeypatch.delenv("CXRSEARCH_DEBUG", raising=False)
    monkeypatch.delenv("CXRSEARCH_OPENI_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def real_data() -> Path:
    root = _real_data_root()
    if not (root / "openi" / "NLMCXR_reports.tgz").is_file():
        pytest.skip(f"real data not found at {root} (set CXRSEARCH_TEST_DATA to the shared data folder)")
    return root


@pytest.fixture(scope="session")
def reports_tgz(real_data: Path) -> Path:
    return real_data / "openi" / "NLMCXR_reports.tgz"


@pytest.fixture(scope="session")
def images_dir(real_data: Path) -> Path:
    path = real_data / "images"
    if not path.is_dir():
        pytest.skip(f"real radiographs not found at {path}")
    return path


@pytest.fixture(scope="session")
def training_images(images_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real radiographs linked under the Open-i names of reports 1-9 (see tests/search/layout.py)."""
    from tests.search.layout import LINKS

    root = tmp_path_factory.mktemp("training_images")
    for name, target in LINKS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(images_dir / target)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(reports_tgz: Path, training_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``tiny-test`` checkpoint really trained (1 epoch) on the first 200 real reports and the real
    radiographs paired with reports 1-9, once per session: for tests that index, search or explain
    with a checkpoint (results are not meaningful; its image side has learned, so radiographs may
    be indexed with it)."""
    from cxrsearch.model.train import TrainOptions, train

    root = tmp_path_factory.mktemp("tiny_checkpoint")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRSEARCH_CACHE", str(root / "cache"))
        options = TrainOptions(
            data=reports_tgz,
            config="tiny-test",
            out=root / "ckpt",
            images=training_images,
            epochs=1,
            batch_size=32,
            lr=3e-3,
            limit=200,
            seed=0,
        )
        return train(options).checkpoint


@pytest.fixture(scope="session")
def text_only_checkpoint(reports_tgz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``tiny-test`` checkpoint trained on reports only (no radiographs): its image side is random."""
    from cxrsearch.model.train import TrainOptions, train

    root = tmp_path_factory.mktemp("text_only_checkpoint")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRSEARCH_CACHE", str(root / "cache"))
        options = TrainOptions(
            data=reports_tgz, config="tiny-test", out=root / "ckpt", epochs=1, batch_size=32, lr=3e-3, limit=60, seed=0
        )
        return train(options).checkpoint
