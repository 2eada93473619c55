"""The web app over a real index: the first Open-i reports with the real radiographs of
``images_dir`` linked under Open-i names (tests/search/layout.py), in an embedded store, once per
session; ``client`` is FastAPI's test client on it (Host 127.0.0.1, as a browser on this machine)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cxrsearch.index import index_studies
from cxrsearch.store.edge import EdgeStore
from tests.search.conftest import openi_images, studies  # noqa: F401  (fixtures shared with tests/search)
from tests.search.layout import COLLECTION, index_options


@dataclass
class Served:
    """The open service, its ASGI app and where things are."""

    service: object
    app: object
    store_dir: Path
    images: Path
    checkpoint: Path


@pytest.fixture(scope="session")
def served(
    tiny_checkpoint: Path,
    openi_images: Path,  # noqa: F811
    reports_tgz: Path,
    real_data: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    from cxrsearch.serve.app import create_app
    from cxrsearch.serve.service import Service
    from cxrsearch.serve.settings import ServeSettings

    root = tmp_path_factory.mktemp("serve")
    store = EdgeStore(root / "store")
    options = index_options(
        reports_tgz, openi_images, real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz", root / "failures"
    )
    index_studies(options, store, tiny_checkpoint)
    settings = ServeSettings(collection=COLLECTION, images=(openi_images,), cache=root / "cache", explain_steps=4)
    service = Service(store, settings)
    app = create_app(service)
    yield Served(service, app, root / "store", openi_images, tiny_checkpoint)
    app.app_state.jobs.close()
    service.close()


@pytest.fixture(scope="session")
def client(served: Served):
    from fastapi.testclient import TestClient

    with TestClient(served.app, base_url="http://127.0.0.1:8765") as test_client:
        yield test_client
