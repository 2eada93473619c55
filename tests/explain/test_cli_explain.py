"""``cxrsearch explain`` end to end: a small real index (tiny checkpoint, real reports and radiographs),
hits taken from ``cxrsearch search`` output, every query mode, the files and the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.search.modes import DEFAULT_WEIGHTS
from tests.explain.conftest import REPORT_ONLY, ExplainStore

JSON_KEYS = {
    "hit",
    "query",
    "target",
    "score",
    "probability",
    "vector_scores",
    "reproduced",
    "top_words",
    "pixels",
    "attention",
    "tokens",
    "fusion",
    "files",
    "notices",
    "timing",
}
STEPS = "4"


def _run(explain_store: ExplainStore, *args: str):
    result = CliRunner().invoke(
        app, [*args, "--store", str(explain_store.store_dir), "--collection", explain_store.collection]
    )
    return result


def _explain_json(explain_store: ExplainStore, out: Path, *args: str) -> dict:
    result = _run(explain_store, "explain", *args, "--steps", STEPS, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _original_size(path: Path) -> tuple[int, int]:
    """(width, height) of a radiograph as decoded."""
    from cxrsearch.image.decode import decode_image

    decoded = decode_image(path)
    return decoded.width, decoded.height


def test_text_query_on_a_hit_from_search(explain_store: ExplainStore, images_dir: Path, tmp_path: Path) -> None:
    found = _run(explain_store, "search", "--text", "enlarged heart", "--view", "PA", "-k", "3", "--json")
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    hit = next(h for h in hits if h["image_id"] == "CXR2_IM-0652-1001")  # the non-square CR DICOM

    data = _explain_json(explain_store, tmp_path, hit["id"], "--text", "enlarged heart")
    assert set(data) == JSON_KEYS
    assert data["hit"]["id"] == hit["id"] and data["query"]["mode"] == "text"
    assert data["reproduced"] == pytest.approx(1.0, abs=1e-5)
    # the default fusion ranks by labels and BM25: the explained score is the label score, the
    # labels part of the fused score (its share over its weight), recomputed through the model
    assert data["target"].startswith("label score") and data["vector_scores"] == {}
    pixels = data["pixels"]
    assert pixels["steps"] == int(STEPS) and pixels["baseline"] == "black"
    assert pixels["precision"] == data["tokens"]["precision"] and pixels["precision"] in ("fp32", "bf16")
    # IG integrates the model at the chosen precision: its f(hit) is the fp32 score up to bf16 rounding
    # (fp32: up to float rounding, the forward there runs a batch of two, the score's a batch of one)
    assert pixels["score"] == pytest.approx(data["score"], abs=1e-2 if pixels["precision"] == "bf16" else 1e-5)
    assert abs(pixels["attribution_sum"] - (pixels["score"] - pixels["baseline_score"])) == pytest.approx(
        abs(pixels["convergence_delta"]), abs=1e-6
    )
    assert data["attention"]["kind"] == "attention (not attribution)"
    words = data["tokens"]["words"]
    assert words and data["top_words"] and all(w["word"] for w in words)
    assert any(len(w["pieces"]) > 1 for w in words), "some report word must have been merged from pieces"
    # the hybrid text query's other components: what the fused score was made of
    fusion = data["fusion"]
    # no fusion.json beside the fixture checkpoint: the default fusion's components (weight > 0)
    assert set(fusion["components"]) == {n for n, w in DEFAULT_WEIGHTS.weights.items() if w > 0}
    assert fusion["fusion"] == DEFAULT_WEIGHTS.fusion
    assert fusion["rank"] is None or fusion["rank"] >= 1
    if fusion["fusion"] == "linear" and all(p["share"] is not None for p in fusion["components"].values()):
        # the fused score is the sum of the components' shares, coefficient x score
        assert fusion["score"] == pytest.approx(sum(p["share"] for p in fusion["components"].values()), abs=1e-4)
    labels = fusion["components"]["labels"]
    if labels["share"] is not None:
        assert data["score"] == pytest.approx(labels["share"] / labels["weight"], abs=1e-4)
    assert any("attributions explain the label score" in n for n in data["notices"])
    bm25 = fusion["components"]["bm25"]["evidence"]
    assert {m["term"] for m in bm25["matched"]} | set(bm25["missing"]) == {"enlarged", "heart"}
    assert all(m["report_weight"] > 0 for m in bm25["matched"])
    assert (fusion["components"]["bm25"]["rank"] is None) == (not bm25["matched"])  # no shared term, not in that list
    shares = fusion["components"]["labels"]["evidence"]
    assert shares and [e["share"] for e in shares] == sorted((e["share"] for e in shares), reverse=True)
    # the largest parts of the engine's dot product of two non-negative probability vectors
    score = fusion["components"]["labels"]["score"]
    assert score is None or 0 < sum(e["share"] for e in shares) <= score + 1e-3

    # geometry: the overlays have the original width and height of the non-square DICOM
    width, height = _original_size(images_dir / "dicom" / "RG1_UNCR.dcm")
    assert (width, height) == (1841, 1955)
    assert data["hit"]["original_size"] == [height, width]
    assert _size(data["files"]["ig_overlay"]) == (width, height)
    assert _size(data["files"]["attention_overlay"]) == (width, height)
    assert Path(data["files"]["figure"]).is_file()
    assert json.loads(Path(data["files"]["json"]).read_text(encoding="utf-8"))["score"] == data["score"]


def test_dicom_image_query_and_both(explain_store: ExplainStore, images_dir: Path, tmp_path: Path) -> None:
    query = images_dir / "dicom" / "siim_chest_monochrome1_variant.dcm"
    image = _explain_json(explain_store, tmp_path / "image", "CXR3_IM-1384-1001", "--image", str(query))
    assert image["query"]["mode"] == "image" and image["pixels"] is not None
    assert _size(image["files"]["ig_overlay"]) == _original_size(
        images_dir / "dicom" / "siim_pneumothorax_chest_pa_jpeg_baseline.dcm"
    )

    both = _explain_json(
        explain_store, tmp_path / "both", "CXR3_IM-1384-1001", "--image", str(query), "--text", "pneumothorax"
    )
    assert both["query"]["mode"] == "text+image"
    # "both" searches the joint vectors, so the explained score is the search score, recomputed
    assert both["score"] == pytest.approx(both["vector_scores"]["joint"], abs=1e-4)
    assert both["score"] != pytest.approx(image["score"], abs=1e-6)
    assert image["fusion"] is None and both["fusion"] is None  # one vector each: the score is the cosine explained


def test_like_and_label(explain_store: ExplainStore, tmp_path: Path) -> None:
    like = _explain_json(explain_store, tmp_path / "like", "CXR4", "--like", "CXR1")
    assert like["query"]["mode"] == "like" and like["hit"]["image_id"] == "CXR4_IM-2050-1001"
    assert like["score"] == pytest.approx(like["vector_scores"]["joint"], abs=1e-4)

    label = _explain_json(
        explain_store, tmp_path / "label", "CXR4_IM-2050-1001", "--label", "Cardiomegaly", "--precision", "fp32"
    )
    assert label["query"]["label"] == "cardiomegaly" and label["target"] == "logit of label cardiomegaly"
    assert 0.0 < label["probability"] < 1.0 and label["vector_scores"] == {}
    assert label["pixels"]["precision"] == "fp32" and label["pixels"]["score"] == pytest.approx(
        label["score"], abs=1e-5
    )


def test_report_only_hit_gets_token_attributions_and_a_notice(explain_store: ExplainStore, tmp_path: Path) -> None:
    result = _run(
        explain_store, "explain", REPORT_ONLY, "--text", "pleural effusion", "--steps", STEPS, "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert "notice:" in result.stdout and "no radiograph" in result.stdout
    assert "Top words" in result.stdout and "_explain.png" not in result.stdout

    data = _explain_json(explain_store, tmp_path, REPORT_ONLY, "--text", "pleural effusion")
    assert data["pixels"] is None and data["attention"] is None and data["tokens"]["words"]
    assert set(data["files"]) == {"json"}
    assert any("no radiograph" in notice for notice in data["notices"])


def test_people_get_scores_words_and_png_paths(explain_store: ExplainStore) -> None:
    result = _run(explain_store, "explain", "CXR1", "--text", "normal chest", "--steps", STEPS)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Integrated Gradients on pixels" in out and "convergence delta" in out
    assert "attention, not attribution" in out and "Top words" in out
    figure = next(line.split()[-1] for line in out.splitlines() if line.strip().startswith("figure"))
    assert Path(figure).is_file() and figure.endswith("_explain.png")
    from cxrsearch import paths

    assert Path(figure).is_relative_to(paths.output_dir())  # default --out: a new folder under the output dir


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["CXR1"], "nothing to explain against"),
        (["CXR1", "--label", "cardiomegaly", "--text", "heart"], "cannot be combined"),
        (["CXR1", "--label", "no such label"], "has no label"),
        (["CXR999", "--text", "heart"], "no indexed case"),
        (["CXR1", "--text", "heart", "--steps", "0"], "--steps"),
        (["CXR1", "--text", "heart", "--precision", "fp16"], "unknown precision 'fp16'"),
    ],
)
def test_mistakes_give_one_line(explain_store: ExplainStore, args: list[str], message: str) -> None:
    result = _run(explain_store, "explain", *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error:") and message in lines[-1] and "Traceback" not in result.output


def test_search_and_explain_write_self_contained_html_sheets(explain_store: ExplainStore, tmp_path: Path) -> None:
    sheet = tmp_path / "teaching.html"
    found = _run(explain_store, "search", "--text", "enlarged heart", "-k", "3", "--json", "--html", str(sheet))
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    page = sheet.read_text(encoding="utf-8")
    assert all(hit["study_id"] in page for hit in hits)
    assert "data:image/png;base64," in page  # thumbnails embedded: the page works without a server
    assert 'src="http' not in page and 'src="/' not in page
    imaged = next(h for h in hits if h["image_id"])
    one = tmp_path / "explain.html"
    result = _run(
        explain_store,
        "explain",
        imaged["id"],
        "--text",
        "enlarged heart",
        "--steps",
        STEPS,
        "--out",
        str(tmp_path / "out"),
        "--html",
        str(one),
    )
    assert result.exit_code == 0, result.output
    text = one.read_text(encoding="utf-8")
    assert imaged["study_id"] in text and "data:image/png;base64," in text
