"""The label vocabulary and the MeSH major -> label mapping, on rules and on the real reports."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from cxrsearch.data.labels import NORMAL, _parse_vocabulary, label_names, labels_from_mesh, negated_labels, vocabulary
from cxrsearch.data.openi import Study, load_studies
from cxrsearch.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "labels.md"


@pytest.fixture(scope="module")
def studies(reports_tgz: Path) -> list[Study]:
    return load_studies(reports_tgz)


def test_vocabulary_shape() -> None:
    names = label_names()
    assert 15 <= len(names) - 1 <= 22 and names[-1] == NORMAL
    assert len(set(names)) == len(names)
    for expected in (
        "cardiomegaly",
        "atelectasis",
        "pleural effusion",
        "lung opacity",
        "edema",
        "pneumonia",
        "consolidation",
        "pneumothorax",
        "emphysema",
        "nodule",
        "fracture",
        "support devices",
        "calcified granuloma",
        "calcinosis",
        "cicatrix",
        "airspace disease",
        "hiatal hernia",
        "scoliosis",
        "aortic atherosclerosis",
        "tortuous aorta",
    ):
        assert expected in names
    assert all(spec.description for spec in vocabulary())


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        (["Cardiomegaly/mild"], ("cardiomegaly",)),
        (["Opacity/lung/base/left/mild", "Cardiomegaly"], ("cardiomegaly", "lung opacity")),
        (["cardiomegaly", "PLEURAL  EFFUSION/right"], ("cardiomegaly", "pleural effusion")),  # case and spacing
        (["Lung/hypoinflation/mild"], ("hypoinflation",)),
        (["Lung/hyperdistention"], ("hyperinflation",)),
        (["Lung/hilum/lymph nodes"], ()),  # a qualifier rule needs its qualifier
        (["Aorta/tortuous/mild", "Aorta, Thoracic/tortuous"], ("tortuous aorta",)),
        (["Aorta/prominent"], ()),
        (["Cardiac Shadow/enlarged/mild"], ("cardiomegaly",)),
        (["Density/lung/base"], ("lung opacity",)),
        (["Density/mediastinum"], ()),
        (["Mass/breast/large"], ()),
        (["Mass/lung/upper lobe"], ("nodule",)),
        (["normal"], ("normal",)),
        (["normal", "Cardiomegaly"], ("cardiomegaly",)),  # normal only when it is the only heading
        (["normal", "Thoracic Vertebrae/degenerative"], ()),
        (["No Indexing"], ()),
        (["Thoracic Vertebrae/degenerative/mild"], ()),
        ([], ()),
    ],
)
def test_labels_from_mesh(terms: list[str], expected: tuple[str, ...]) -> None:
    assert labels_from_mesh(terms) == expected


def test_bad_vocabulary_files_are_refused() -> None:
    base = {"name": NORMAL, "description": "", "rules": [{"heading": "normal"}]}
    with pytest.raises(ConfigError, match="listed twice"):
        _parse_vocabulary({"labels": [base, base]}, "x.json")
    with pytest.raises(ConfigError, match="used by both"):
        _parse_vocabulary({"labels": [base, {"name": "n2", "rules": [{"heading": "Normal "}]}]}, "x.json")
    with pytest.raises(ConfigError, match="must contain"):
        _parse_vocabulary({"labels": [{"name": "a", "rules": [{"heading": "A"}]}]}, "x.json")
    with pytest.raises(ConfigError, match="bad rule"):
        _parse_vocabulary({"labels": [{"name": "a", "rules": [{"heading": ""}]}, base]}, "x.json")


def _docs_table() -> dict[str, int]:
    rows = re.findall(r"^\| ([a-z ]+) \| (\d+) \|", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {name: int(count) for name, count in rows}


def test_real_label_frequencies_match_the_documented_table(studies: list[Study]) -> None:
    counts = Counter(label for study in studies for label in study.labels)
    documented = _docs_table()
    assert list(documented) == list(label_names())
    assert {name: counts[name] for name in label_names()} == documented
    assert 300 <= counts["cardiomegaly"] <= 500  # "a few hundred"


def test_real_labels_follow_the_rules(studies: list[Study]) -> None:
    normal = [s for s in studies if "normal" in s.labels]
    assert len(normal) == sum(1 for s in studies if s.mesh_major == ("normal",)) == 1391
    assert all(s.labels == ("normal",) for s in normal)
    assert all(s.labels == () for s in studies if s.mesh_major == ("No Indexing",))
    heading_counts = Counter(t.split("/")[0] for s in studies for t in set(s.mesh_major))
    with_heading = {s.uid for s in studies if any(t.split("/")[0] == "Cardiomegaly" for t in s.mesh_major)}
    cardiomegaly = {s.uid for s in studies if "cardiomegaly" in s.labels}
    assert with_heading <= cardiomegaly and heading_counts["Cardiomegaly"] == 375
    assert all(s.labels == labels_from_mesh(s.mesh_major) for s in studies)


def test_labels_are_not_keyword_matches(studies: list[Study]) -> None:
    mentions = sum(1 for s in studies if "pneumothorax" in s.report_text().lower())
    labelled = sum(1 for s in studies if "pneumothorax" in s.labels)
    assert mentions > 2000 and labelled == 23  # "no pneumothorax" is not a pneumothorax


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("no pleural effusion", {"pleural effusion"}),
        ("without cardiomegaly", {"cardiomegaly"}),
        ("pleural effusion, no pneumothorax", {"pneumothorax"}),
        ("No edema. Small right pleural effusion.", {"edema"}),  # the effusion is affirmed
        ("No edema. Mild pulmonary edema since.", set()),  # named outside the negation too
        ("no nodule", {"nodule"}),
        ("enlarged heart", set()),
        ("nodule", set()),  # "nodule" starts with "no" but is not negated
    ],
)
def test_negated_labels_are_the_labels_named_only_inside_a_negation(text, negated):
    assert negated_labels(text) == negated
