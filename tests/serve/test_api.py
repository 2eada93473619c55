"""The JSON API and the pages over a real index (FastAPI's test client): the same hits as
``cxrsearch search --json``, radiographs re-rendered from the originals, uploads through the
decoder's guards, explanations on demand, and the guards (token, Host, traversal, size cap)."""

from __future__ import annotations

import copy
import io
import json
import re
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrsearch.cli.main import app as cli_app
from cxrsearch.image.decode import decode_image
from tests.rankings import assert_same_hits
from tests.search.layout import COLLECTION, LINKS

TEXT = "heart size normal lungs clear"


@pytest.fixture()
def cli_on_served_store(served, monkeypatch):
    """``cxrsearch search`` run in-process over the store the server holds open (the embedded store
    admits one process per collection)."""
    import cxrsearch.cli.search as cli_search

    @contextmanager
    def same_store(*_args, **_kwargs):
        yield served.service.store._store

    monkeypatch.setattr(cli_search, "opened_store", same_store)

    def run(*args: str):
        result = CliRunner().invoke(cli_app, ["search", *args, "--collection", COLLECTION, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return run


def image_points(client) -> list[dict]:
    hits = client.get("/api/search", params={"text": TEXT, "k": 200, "collapse": "0"}).json()
    return [h for h in hits if h["kind"] == "image"]


def some_label(client) -> str:
    counts = client.get("/api/search", params={"text": TEXT, "facets": "1", "k": 1}).json()["facets"]
    return max(counts, key=counts.get)


@pytest.mark.parametrize("extra", [[], ["--no-collapse"], ["--facets"], ["--truth", "--view", "PA"]])
def test_text_query_with_label_filter_returns_the_cli_s_hits(client, cli_on_served_store, extra) -> None:
    label = some_label(client)
    params = [("text", TEXT), ("label", label), ("k", "7")]
    flags = {"--no-collapse": ("collapse", "0"), "--facets": ("facets", "1"), "--truth": ("truth", "1")}
    params += [flags[f] for f in extra if f in flags]
    if "--view" in extra:
        params.append(("view", "PA"))
    cli = cli_on_served_store("--text", TEXT, "--label", label, "-k", "7", *extra)
    api = client.get("/api/search", params=params)
    assert api.status_code == 200
    assert_same_hits(api.json(), cli)
    hits = cli["hits"] if isinstance(cli, dict) else cli
    truth = "--truth" in extra
    for hit in hits:
        assert label in hit["labels_true" if truth else "labels"]


def test_like_and_not_label_queries_match_the_cli(client, cli_on_served_store) -> None:
    label = some_label(client)
    cli = cli_on_served_store("--like", "CXR1", "--not-label", label, "-k", "5")
    api = client.get("/api/search", params={"like": "CXR1", "not_label": label, "k": 5}).json()
    assert api == cli and cli
    assert all(label not in hit["labels"] for hit in api)
    assert all(hit["study_id"] != "CXR1" for hit in api)


def test_bad_queries_are_one_line_errors_naming_what_is_valid(client) -> None:
    bad = client.get("/api/search", params={"text": TEXT, "label": "no such label"})
    assert bad.status_code == 400
    assert "unknown label 'no such label'" in bad.json()["error"] and "cardiomegaly" in bad.json()["error"]
    assert client.get("/api/search").status_code == 400
    assert "valid views" in client.get("/api/search", params={"text": "x", "view": "side"}).json()["error"]
    page = client.get("/", params={"text": TEXT, "label": "nope"})
    assert page.status_code == 400 and "unknown label" in page.text


def test_info_lists_the_collection_s_vocabulary(client, served) -> None:
    info = client.get("/api/info").json()
    assert info["collection"] == COLLECTION and info["points"] > 100
    assert tuple(info["labels"]) == served.service.labels and "cardiomegaly" in info["labels"]
    assert info["views"] == ["PA", "AP", "LATERAL"] and info["splits"] == ["train", "val", "test"]


def test_thumbnails_are_rendered_through_the_decoder_and_carry_no_metadata(client, served) -> None:
    for hit in image_points(client):
        response = client.get(f"/image/{hit['id']}/thumb.png")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        png = Image.open(io.BytesIO(response.content))
        assert max(png.size) <= 320 and png.mode == "L"
        assert not {k for k in png.info if k not in ("dpi", "gamma")}, png.info  # no text chunks, no EXIF
    first = image_points(client)[0]
    cached = list((served.service.settings.cache_dir / "png").glob("*-320.png"))
    assert cached  # cached on disk by the file's fingerprint
    again = client.get(f"/image/{first['id']}/thumb.png")
    assert again.content == client.get(f"/image/{first['id']}/thumb.png").content


def test_the_full_image_is_the_decoded_film_at_its_original_size(client, served) -> None:
    dicom = next(h for h in image_points(client) if h["image_id"] == "CXR2_IM-0652-1001")
    response = client.get(f"/image/{dicom['id']}/full.png")
    film = Image.open(io.BytesIO(response.content))
    decoded = decode_image(served.images / "dicom" / "2_IM-0652-1001.dcm")
    assert film.size == (decoded.width, decoded.height)
    expected = np.round(np.clip(decoded.pixels, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(film), expected)


def test_report_only_hits_say_so_and_have_no_image(client) -> None:
    hits = client.get("/api/search", params={"text": TEXT, "k": 200, "collapse": "0"}).json()
    report = next(h for h in hits if h["kind"] == "report")
    assert client.get(f"/image/{report['id']}/thumb.png").status_code == 404
    page = client.get(f"/case/{report['id']}").text
    assert "Report-only case" in page and "full.png" not in page
    case = client.get(f"/api/case/{report['id']}").json()
    assert case["image_url"] is None and case["study_id"] == report["study_id"]


def test_cards_show_what_the_json_holds(client) -> None:
    label = some_label(client)
    api = client.get("/api/search", params={"text": TEXT, "label": label, "k": 5}).json()
    page = client.get("/", params={"text": TEXT, "label": label, "k": 5})
    assert page.status_code == 200
    assert page.text.count('class="card"') == len(api)
    for hit in api:  # each hit's card, or that of a copy of its report that scored the same (it may head the group)
        copies = [hit["id"], *(m["id"] for m in hit["identical"])]
        assert any(f'data-id="{ident}"' in page.text for ident in copies) and hit["study_id"] in page.text
    assert "Predicted labels in all" in page.text  # the facets
    assert f'<option value="{label}" selected>' in page.text  # the form keeps the filter


def test_case_page_shows_the_radiograph_and_the_whole_report(client) -> None:
    hit = image_points(client)[0]
    page = client.get(f"/case/{hit['id']}", params={"text": TEXT})
    assert page.status_code == 200
    assert f"/image/{hit['id']}/full.png" in page.text and "Explain this match" in page.text
    for part in (hit["findings"], hit["impression"]):
        if part:
            assert part.split()[0] in page.text
    assert client.get("/case/CXR1").status_code == 200  # a study id works as in --like
    assert client.get("/case/CXR999999").status_code == 404


def test_upload_search_goes_through_the_decoder(client, served, images_dir) -> None:
    path = images_dir / LINKS["dicom/2_IM-0652-1001.dcm"]
    with path.open("rb") as fh:
        response = client.post("/api/search", data={"k": "3"}, files={"image": ("x.dcm", fh, "application/dicom")})
    assert response.status_code == 200, response.text
    hits = response.json()
    assert hits and all(h["kind"] == "image" for h in hits)
    assert hits[0]["image_id"] == "CXR2_IM-0652-1001"  # the film's own point ranks first
    junk = client.post("/api/search", files={"image": ("x.png", b"GIF89a not a radiograph", "image/png")})
    assert junk.status_code == 400 and "GIF" in junk.json()["error"]
    with path.open("rb") as fh:  # the page form: upload kept under its sha256, results at a GET address
        form = client.post("/search", files={"image": ("x.dcm", fh)}, data={"k": "3"}, follow_redirects=False)
    assert form.status_code == 303 and "upload=" in form.headers["location"]
    page = client.get(form.headers["location"])
    assert page.text.count('class="card"') == 3


def test_uploads_above_the_cap_are_refused_before_decoding(served) -> None:
    from fastapi.testclient import TestClient

    from cxrsearch.serve.app import create_app

    small = copy.copy(served.service)
    small.settings = replace(served.service.settings, max_upload_bytes=1024)
    with TestClient(create_app(small), base_url="http://127.0.0.1") as client:
        big = b"\x89PNG\r\n\x1a\n" + b"0" * (2 * 1024 * 1024)
        response = client.post("/api/search", files={"image": ("big.png", big, "image/png")})
        assert response.status_code == 413 and "too large" in response.text
        form = client.post("/search", files={"image": ("big.png", big[:4096], "image/png")})
        assert form.status_code == 400 and "too large" in form.text


@pytest.mark.parametrize(
    "url",
    [
        "/image/..%2F..%2F..%2Fetc%2Fpasswd/thumb.png",
        "/static/../pyproject.toml",
        "/static/..%2F..%2Fpyproject.toml",
        "/explain/..%2F..%2Fetc/passwd.png",
        "/image/%2Fetc%2Fpasswd/full.png",
    ],
)
def test_urls_never_reach_files_outside_the_package_and_the_roots(client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert b"root:" not in response.content and b"[project]" not in response.content


def test_a_payload_pointing_outside_the_roots_is_not_served(client, served, monkeypatch) -> None:
    from cxrsearch.store.base import Point

    hit = image_points(client)[0]
    real = served.service.store._store.retrieve

    for evil in ("/etc/passwd", "../../../../etc/passwd", str(served.images / ".." / ".." / "etc" / "passwd")):

        def retrieve(collection, ids, with_vectors=False, evil=evil):
            return [
                Point(id=p.id, vectors=p.vectors, payload={**p.payload, "image_path": evil})
                for p in real(collection, ids, with_vectors)
            ]

        monkeypatch.setattr(served.service.store._store, "retrieve", retrieve)
        for size in ("thumb", "full"):
            response = client.get(f"/image/{hit['id']}/{size}.png")
            assert response.status_code == 404 and b"root:" not in response.content
        monkeypatch.undo()


def test_explain_api_mirrors_explain_json_and_serves_the_overlay(client) -> None:
    hit = image_points(client)[0]
    response = client.post("/api/explain", data={"hit": hit["id"], "text": TEXT, "wait": "120"})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["state"] == "done", job
    result = job["result"]
    assert {"hit", "query", "target", "score", "pixels", "tokens", "attention", "top_words", "timing"} <= set(result)
    assert result["hit"]["id"] == hit["id"] and result["query"] == {
        "mode": "text",
        "text": TEXT,
        "image": None,
        "like": None,
        "label": None,
    }
    assert set(result["files"]) == {"ig", "attention", "figure"}
    assert all(url.startswith("/explain/") for url in result["files"].values())  # no server paths
    overlay = client.get(result["files"]["ig"])
    assert overlay.status_code == 200 and Image.open(io.BytesIO(overlay.content)).size[0] > 0
    again = client.get(f"/api/explain/{job['job']}").json()
    assert again["state"] == "done" and again["result"]["score"] == result["score"]
    assert client.get("/api/explain/nosuchjob").status_code == 404


def test_explain_from_the_case_page_shows_progress_then_the_overlay(client) -> None:
    import time

    hit = image_points(client)[-1]
    started = client.post(f"/case/{hit['id']}/explain", data={"text": "enlarged heart"}, follow_redirects=False)
    assert started.status_code == 303
    page = client.get(started.headers["location"])
    deadline = time.time() + 120
    while "Computing the explanation" in page.text and time.time() < deadline:
        assert '<meta http-equiv="refresh"' in page.text
        time.sleep(0.5)
        page = client.get(started.headers["location"])
    assert 'class="overlay ig"' in page.text and "The report, word by word" in page.text
    # the fused score's parts, as `cxrsearch explain` prints them: a row per component of the JSON
    (key,) = re.findall(r'href="/api/explain/([^"]+)"', page.text)
    fusion = client.get(f"/api/explain/{key}").json()["result"]["fusion"]
    assert fusion and "What ranked the hit" in page.text
    for name, part in fusion["components"].items():
        row = re.search(rf'<tr data-component="{name}">(.*?)</tr>', page.text).group(1)
        cells = re.findall(r"<td>(.*?)</td>", row)
        assert cells[0] == name and cells[2] == ("-" if part["rank"] is None else str(part["rank"]))
        if fusion["fusion"] == "linear":
            assert cells[4] == ("-" if part["share"] is None else f"{part['share']:.4f}")


def test_label_explanations_need_no_query(client) -> None:
    hit = next(h for h in image_points(client) if h["labels"])
    response = client.post("/api/explain", data={"hit": hit["id"], "label": hit["labels"][0], "wait": "120"}).json()
    assert response["state"] == "done" and response["result"]["query"]["mode"] == "label"
    assert client.post("/api/explain", data={"hit": hit["id"]}).status_code == 400


def test_token_guards_every_request(served) -> None:
    from fastapi.testclient import TestClient

    from cxrsearch.serve.app import create_app

    secret = "correct-horse-battery-staple"
    guarded = copy.copy(served.service)
    guarded.settings = replace(served.service.settings, host="0.0.0.0", token=secret)
    with TestClient(create_app(guarded), base_url="http://192.168.1.20:8765") as client:
        for url in ("/", "/api/info", "/static/style.css", "/image/x/thumb.png"):
            assert client.get(url).status_code == 401
        assert client.get("/api/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/info", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        assert client.get("/api/info", headers={"X-Cxrsearch-Token": secret}).status_code == 200
        link = client.get(f"/?token={secret}&text=x", follow_redirects=False)
        assert link.status_code == 303 and link.headers["location"] == "/?text=x"
        assert "HttpOnly" in link.headers["set-cookie"] and "SameSite=Strict" in link.headers["set-cookie"]
        assert client.get("/api/info").status_code == 200  # the cookie now carries it


def test_loopback_server_answers_loopback_host_names_only(served) -> None:
    from fastapi.testclient import TestClient

    with TestClient(served.app, base_url="http://evil.example:8765") as client:
        assert client.get("/api/info").status_code == 421
    with TestClient(served.app, base_url="http://localhost:8765") as client:
        assert client.get("/api/info").status_code == 200
        cross = client.post(
            "/api/explain", data={"hit": "CXR1", "label": "normal"}, headers={"Origin": "http://evil.example"}
        )
        assert cross.status_code == 403


def test_pages_are_private_and_scriptless(client) -> None:
    page = client.get("/", params={"text": TEXT})
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script at all
    assert "<script" not in page.text and "http://" not in page.text and "https://" not in page.text


def test_serve_refuses_an_exposed_bind_without_a_token() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: binding 0.0.0.0") and "--token" in result.stderr
