"""What a person sees, in headless Chromium (Debian's ``chromium``, driven by Playwright): type a
query, apply a label filter, open a case, trigger explain; the cards, the radiograph and the
overlay load, and the console stays clean. Skipped, with the reason, when no browser is installed
(``make test`` installs it where it can: ``make browser``).

``CXRSEARCH_SCREENSHOTS=docs/img`` keeps a screenshot of each page there (the README's pictures).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

TEXT = "the heart and lungs are normal"  # a query no other test explains (jobs are shared)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium installed (apt-get install chromium, or `make browser` as root): browser tests skipped")


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright): browser tests skipped")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def base_url(served):
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(served.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.problems = problems
    yield tab
    context.close()


def _shot(tab, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("CXRSEARCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(folder / f"web-{name}.png"), full_page=True)


def _loaded(tab, selector: str) -> bool:
    return tab.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_search_filter_open_case_and_explain(page, base_url, client, tmp_path) -> None:
    counts = client.get("/api/search", params={"text": TEXT, "facets": "1", "k": 1}).json()["facets"]
    found = ((name, client.get("/api/search", params={"text": TEXT, "label": name}).json()) for name in counts)
    label, expected = next((name, hits) for name, hits in found if any(h["kind"] == "image" for h in hits))

    page.goto(base_url + "/")
    page.fill("input[name=text]", TEXT)
    page.select_option("select[name=label]", [label])
    page.click("button[type=submit]")
    page.wait_for_selector("article.card")
    shown = page.eval_on_selector_all("article.card", "cards => cards.map(c => c.dataset.id)")
    assert shown == [h["id"] for h in expected]  # the same hits as /api/search, same order
    assert page.locator(f"select[name=label] option[value='{label}']").evaluate("o => o.selected")
    film = next(h for h in expected if h["kind"] == "image")
    thumb = page.locator(f"article.card[data-id='{film['id']}'] .thumb img")
    thumb.scroll_into_view_if_needed()  # thumbnails load lazily, as they come into view
    page.wait_for_function(
        "id => { const i = document.querySelector(`article.card[data-id='${id}'] .thumb img`);"
        " return i.complete && i.naturalWidth > 0; }",
        arg=film["id"],
    )
    assert page.locator(".facets li").count() >= 1
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, tmp_path, "search")

    page.click(f"article.card[data-id='{film['id']}'] a.study")
    page.wait_for_selector("img.radiograph")
    page.wait_for_function(
        "() => { const i = document.querySelector('img.radiograph'); return i.complete && i.naturalWidth > 0; }"
    )
    assert _loaded(page, "img.radiograph")
    assert film["study_id"] in page.inner_text("h1")
    _shot(page, tmp_path, "case")

    page.click("section.explain button[type=submit]")
    page.wait_for_selector(".progress, img.overlay.ig", timeout=30_000)
    page.wait_for_selector("img.overlay.ig", timeout=180_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('img.overlay.ig'); return i.complete && i.naturalWidth > 0; }"
    )
    assert page.locator(".words .w").count() > 0  # word attributions
    rows = page.eval_on_selector_all("table.fusion tbody tr", "rows => rows.map(r => r.dataset.component)")
    assert rows and set(rows) <= {"text", "image", "bm25", "labels"}  # what ranked the hit, a row per component
    _shot(page, tmp_path, "explain")
    assert page.problems == []


def test_report_only_cards_say_so(page, base_url, client) -> None:
    hits = client.get("/api/search", params={"text": TEXT, "k": 10}).json()
    report = next(h for h in hits if h["kind"] == "report")
    page.goto(f"{base_url}/?text={TEXT.replace(' ', '+')}")
    card = page.locator(f"article.card[data-id='{report['id']}']")
    assert "report only" in card.inner_text().lower()
    assert card.locator("img").count() == 0
    assert page.problems == []
