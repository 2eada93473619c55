"""``search --html`` / ``explain --html``: the cards (or one explanation) as one self-contained file."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from cxrsearch.serve.sheet import explain_sheet, search_sheet, write_explain_sheet, write_search_sheet
from tests.search.layout import COLLECTION

TEXT = "heart size normal lungs clear"


def _self_contained(html: str) -> list[bytes]:
    """The embedded images; asserts nothing is fetched from anywhere."""
    assert "<script" not in html
    assert not re.search(r'(src|href)="(?!data:|#)', html), "a reference outside the file"
    assert "<style>" in html and "/static/" not in html
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_search_sheet_embeds_every_film_and_says_which_hits_are_reports(served, tmp_path) -> None:
    spec = served.service.spec(text=TEXT, k=40)
    result = served.service.search(spec, collapse=False, facets=True)
    roots = served.service.image_roots()
    html = search_sheet(
        result.hits, "teaching set: normal hearts", image_roots=roots, facets=result.facets, total=result.total
    )
    images = _self_contained(html)
    films = [h for h in result.records if h["kind"] == "image"]
    reports = [h for h in result.records if h["kind"] == "report"]
    assert films and reports
    assert len(images) == len(films)
    for data in images:
        png = Image.open(io.BytesIO(data))
        assert png.mode == "L" and max(png.size) <= 640
    assert html.count('class="card"') == len(result.records)
    assert html.count("Report-only case") == len(reports)
    for hit in result.records:
        assert hit["study_id"] in html
    assert "teaching set: normal hearts" in html and "matching cases" in html
    path = write_search_sheet(tmp_path / "out" / "set.html", result.hits, "t", image_roots=roots)
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_without_roots_relative_paths_are_said_to_be_unavailable(served) -> None:
    result = served.service.search(served.service.spec(text=TEXT, k=40), collapse=False)
    html = search_sheet(result.hits, "t")
    relative = [
        h for h in result.hits if h.payload.get("image_path") and not str(h.payload["image_path"]).startswith("/")
    ]
    if relative:
        assert "radiograph not available" in html


def test_text_is_escaped(served) -> None:
    result = served.service.search(served.service.spec(text=TEXT, k=3))
    html = search_sheet(result.hits, "<img src=x onerror=alert(1)>")
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_explain_sheet_embeds_the_film_and_the_overlays(served, tmp_path) -> None:
    from cxrsearch.explain.explain import explain
    from cxrsearch.explain.output import write_explanation
    from cxrsearch.explain.request import ExplainRequest

    hits = served.service.search(served.service.spec(text=TEXT, k=100), collapse=False).records
    film = next(h for h in hits if h["kind"] == "image")
    request = ExplainRequest(hit=film["id"], collection=COLLECTION, text=TEXT, steps=4, out_dir=tmp_path / "x")
    result = write_explanation(explain(request, served.service.store, served.service.encoder("explain")), request)
    html = explain_sheet(result, image_roots=served.service.image_roots())
    images = _self_contained(html)
    assert len(images) == 3  # film, IG overlay, attention overlay
    assert 'class="overlay ig"' in html and "word by word" in html
    assert result.fusion is not None and "What ranked the hit" in html  # the fused score's parts
    assert all(f'<tr data-component="{name}">' in html for name in result.fusion.components)
    assert write_explain_sheet(tmp_path / "why.html", result).is_file()
