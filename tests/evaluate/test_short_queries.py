"""The short-query set: coverage of every label, a strict loader, and not copied from the reports."""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from cxrsearch.data.labels import label_names
from cxrsearch.data.openi import load_studies
from cxrsearch.errors import ConfigError
from cxrsearch.evaluate.short_queries import DEFAULT_PATH, SHORT_QUERY_SET, ShortQuery, load_short_queries

REPO_ROOT = Path(__file__).resolve().parents[2]


def _norm(text: str) -> str:
    """Lowercase, punctuation to spaces, spaces collapsed."""
    return " ".join(re.sub(r"[^\w\s]|_", " ", text.casefold()).split())


# --------------------------------------------------------------------------- the packaged set
def test_every_label_has_at_least_five_test_and_three_dev_queries() -> None:
    queries = load_short_queries(vocabulary=label_names())
    per_split = Counter((q.label, q.split) for q in queries)
    for label in label_names():
        assert per_split[(label, "dev")] >= 3, label
        assert per_split[(label, "test")] >= 5, label
    assert {q.label for q in queries} == set(label_names())
    assert load_short_queries("dev") == [q for q in queries if q.split == "dev"]
    assert load_short_queries("test") == [q for q in queries if q.split == "test"]
    assert len(load_short_queries("dev")) + len(load_short_queries("test")) == len(queries)


def test_ids_and_texts_are_unique_short_and_follow_the_split_rule() -> None:
    queries = load_short_queries()
    assert all(isinstance(q, ShortQuery) for q in queries)
    assert len({q.id for q in queries}) == len(queries)
    assert len({_norm(q.text) for q in queries}) == len(queries)
    assert [(q.label, q.id) for q in queries] == sorted((q.label, q.id) for q in queries)
    negation = re.compile(r"\b(no|not|without|negative for|free of|absent|resolved|clear of)\b")
    for q in queries:
        prefix = q.label.replace(" ", "-") + "-"
        assert q.id.startswith(prefix) and q.id[len(prefix) :].isdigit(), q.id
        assert q.split == ("dev" if int(q.id[len(prefix) :]) in (2, 5, 8) else "test"), q.id
        assert 2 <= len(q.text.split()) <= 6, q.text
        assert q.text == q.text.strip() and q.text == q.text.lower(), q.text
        assert not negation.search(q.text), f"negated phrasing {q.text!r}"


def test_the_file_is_versioned_and_packaged() -> None:
    raw = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    assert raw["version"] == SHORT_QUERY_SET == DEFAULT_PATH.stem
    assert "not copied from Open-i reports" in raw["provenance"]
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "evaluate/queries/*.json" in package_data["cxrsearch"]


# --------------------------------------------------------------------------- strict loader
GOOD = {"id": "cardiomegaly-01", "label": "cardiomegaly", "text": "enlarged heart", "split": "test"}


def _write(tmp_path: Path, queries: object, **top: object) -> Path:
    path = tmp_path / "bad-set.json"
    path.write_text(json.dumps({"version": "short-test", "queries": queries, **top}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("queries", "top", "message"),
    [
        ([GOOD], {"extra": 1}, "unknown keys"),
        ([{**GOOD, "weight": 2}], {}, "unknown keys"),
        ([{k: v for k, v in GOOD.items() if k != "split"}], {}, "missing keys"),
        ([GOOD, {**GOOD, "text": "big heart"}], {}, "duplicate query id"),
        ([GOOD, {**GOOD, "id": "cardiomegaly-02", "text": "Enlarged  Heart"}], {}, "duplicates query"),
        ([{**GOOD, "split": "train"}], {}, "split 'train'"),
        ([{**GOOD, "text": "   "}], {}, "empty text"),
        ([{**GOOD, "label": "heart failure"}], {}, "not in the vocabulary"),
        ([{**GOOD, "text": 3}], {}, "must be strings"),
        ([], {}, "non-empty list"),
        (["enlarged heart"], {}, "not an object"),
    ],
)
def test_the_loader_rejects_a_malformed_file(tmp_path: Path, queries: object, top: dict, message: str) -> None:
    path = _write(tmp_path, queries, **top)
    with pytest.raises(ConfigError, match=message) as info:
        load_short_queries(vocabulary=label_names(), path=path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_the_loader_rejects_unreadable_json_and_a_bad_split_argument(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_short_queries(path=path)
    assert info.value.path == str(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_short_queries(path=tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="unknown short-query split"):
        load_short_queries("train")


def test_the_vocabulary_check_is_optional(tmp_path: Path) -> None:
    other = {**GOOD, "id": "x-02", "text": "big heart", "split": "dev"}
    path = _write(tmp_path, [{**GOOD, "label": "heart failure"}, other])
    queries = load_short_queries(path=path)
    assert [q.id for q in queries] == ["cardiomegaly-01", "x-02"]
    assert load_short_queries("dev", path=path) == [ShortQuery("x-02", "cardiomegaly", "big heart", "dev")]


# --------------------------------------------------------------------------- real reports
def test_no_query_is_a_whole_sentence_of_an_open_i_report(reports_tgz: Path) -> None:
    sentences: set[str] = set()
    for study in load_studies(reports_tgz):
        for section in (study.findings, study.impression):
            for part in re.split(r"[.;:!?](?:\s+|$)", section or ""):
                if sentence := _norm(part):
                    sentences.add(sentence)
    assert len(sentences) > 1000  # the real reports were read
    copied = [q.text for q in load_short_queries() if _norm(q.text) in sentences]
    assert not copied, f"query texts equal to a whole Open-i report sentence: {copied}"
