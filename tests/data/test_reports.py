"""Open-i reports -> Study: all real reports, every source form, and bad or hostile input."""

from __future__ import annotations

import dataclasses
import io
import random
import tarfile
from pathlib import Path

import pytest

from cxrsearch.data.openi import MAX_REPORT_BYTES, Study, load_studies, locate_reports, parse_report
from cxrsearch.errors import ReportError


def report_xml(
    uid: str = "CXR7",
    *,
    findings: str = "Heart is enlarged.",
    major: tuple[str, ...] = ("Cardiomegaly/mild",),
    images: tuple[str, ...] = ("CXR7_IM-0001-1001",),
) -> bytes:
    """A minimal report in the real Open-i structure."""
    majors = "".join(f"<major>{m}</major>" for m in major)
    parents = "".join(f'<parentImage id="{i}"><figureId>F1</figureId></parentImage>' for i in images)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="{uid}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="INDICATION">XXXX-year-old with cough</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION"/>
</Abstract></Article></MedlineCitation>
<MeSH>{majors}<automatic>cardiomegaly</automatic></MeSH>{parents}</eCitation>""".encode()


def make_tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def studies(reports_tgz: Path) -> list[Study]:
    return load_studies(reports_tgz)


def test_all_real_reports_parse_with_the_published_counts(studies: list[Study]) -> None:
    assert len(studies) == 3955
    assert len({s.uid for s in studies}) == 3955
    assert sum(len(s.image_ids) for s in studies) == 7470
    assert sum(1 for s in studies if not s.image_ids) == 104
    assert [s.number for s in studies] == sorted(s.number for s in studies)
    assert all(image_id.startswith(s.uid + "_") for s in studies for image_id in s.image_ids)


def test_first_real_report_fields(studies: list[Study], reports_tgz: Path) -> None:
    first = studies[0]
    assert first.uid == "CXR1" and first.number == 1
    assert first.indication == "Positive TB test"
    assert first.findings.startswith("The cardiac silhouette and mediastinum size are within normal limits.")
    assert first.impression == "Normal chest x-XXXX."  # kept as written; the model text cleans it
    assert first.mesh_major == ("normal",) and first.labels == ("normal",)
    assert first.image_ids == ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001")
    assert first.source == f"{reports_tgz}:ecgen-radiology/1.xml"
    assert "Normal chest x-ray." in first.report_text() and "XXXX" not in first.report_text()


def test_missing_sections_are_none_and_studies_without_images_are_kept(studies: list[Study]) -> None:
    assert sum(1 for s in studies if s.findings is None) == 530
    assert sum(1 for s in studies if s.impression is None) == 34
    without = [s for s in studies if not s.image_ids]
    assert without and all(s.split in ("train", "val", "test") for s in without)


def test_loading_is_fast_and_cached(reports_tgz: Path, studies: list[Study]) -> None:
    import time

    start = time.perf_counter()
    again = load_studies(reports_tgz)
    assert time.perf_counter() - start < 0.5  # in-process cache keyed by size + mtime
    assert again == studies and again is not studies


def test_tgz_folder_and_data_folder_give_the_same_studies(
    reports_tgz: Path, real_data: Path, tmp_path: Path, studies: list[Study]
) -> None:
    with tarfile.open(reports_tgz) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(("/1.xml", "/2.xml", "/10.xml"))]
        tar.extractall(tmp_path, members=members, filter="data")
    folder = tmp_path / "ecgen-radiology"
    by_uid = {s.uid: s for s in studies}
    for source in (folder, tmp_path):  # a folder of XML, and a data folder holding ecgen-radiology/
        loaded = load_studies(source)
        assert [s.uid for s in loaded] == ["CXR1", "CXR2", "CXR10"]
        for study in loaded:
            assert study.source == str(folder / f"{study.number}.xml")
            assert study == dataclasses.replace(by_uid[study.uid], source=study.source)
    assert locate_reports(real_data) == reports_tgz  # the shared layout: <dir>/openi/NLMCXR_reports.tgz
    assert [s.uid for s in load_studies(folder / "10.xml")] == ["CXR10"]


# --------------------------------------------------------------------------- synthetic, well-formed
def test_parse_minimal_report() -> None:
    study = parse_report(report_xml(), "mem.xml")
    assert study.uid == "CXR7" and study.comparison == "None." and study.impression is None
    assert study.mesh_major == ("Cardiomegaly/mild",) and study.mesh_automatic == ("cardiomegaly",)
    assert study.labels == ("cardiomegaly",) and study.image_ids == ("CXR7_IM-0001-1001",)
    assert study.report_text() == "Heart is enlarged."


def test_labels_never_come_from_free_text() -> None:
    data = report_xml(findings="No pneumothorax. Large right pleural effusion.", major=("No Indexing",))
    study = parse_report(data, "m")
    assert study.labels == ()


# --------------------------------------------------------------------------- bad and hostile input
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<eCitation><uId id="CXR1"/><MeSH><major>&lol3;</major></MeSH></eCitation>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<eCitation><uId id="CXR1"/><MeSH><major>&xxe;</major></MeSH></eCitation>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?><!DOCTYPE eCitation SYSTEM "http://example.invalid/x.dtd"><eCitation/>"""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"  \n", "empty file"),
        (b"\x00" + random.Random(1).randbytes(255), "not well-formed XML"),  # seeded: never flaky
        (report_xml()[:300], "not well-formed XML"),
        (b"just some text", "not well-formed XML"),
        (BILLION_LAUGHS, "refused"),
        (XXE, "refused"),
        (EXTERNAL_DTD, "refused"),
        (b"<html><body/></html>", "not an Open-i report"),
        (report_xml(uid="1234"), "malformed <uId"),
        (report_xml().replace(b'<uId id="CXR7"/>', b""), "missing or malformed <uId"),
        (report_xml(images=("CXR7/../../x",)), "malformed <parentImage"),
        (b"<eCitation>" + b" " * MAX_REPORT_BYTES + b"</eCitation>", "refused"),
    ],
    ids=[
        "empty",
        "blank",
        "random-bytes",
        "truncated",
        "text",
        "billion-laughs",
        "xxe",
        "external-dtd",
        "wrong-root",
        "bad-uid",
        "no-uid",
        "bad-image-id",
        "oversized",
    ],
)
def test_bad_reports_raise_report_error_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(ReportError) as caught:
        parse_report(data, "/data/bad.xml")
    assert caught.value.path == "/data/bad.xml"
    assert message in caught.value.message
    assert str(caught.value).startswith("/data/bad.xml: ")


def test_tgz_with_a_broken_member_names_the_member(tmp_path: Path) -> None:
    tgz = make_tgz(tmp_path / "r.tgz", {"ecgen-radiology/7.xml": report_xml(), "ecgen-radiology/8.xml": XXE})
    with pytest.raises(ReportError, match="refused") as caught:
        load_studies(tgz)
    assert caught.value.path == f"{tgz}:ecgen-radiology/8.xml"


def test_truncated_and_non_archive_files_are_refused(tmp_path: Path) -> None:
    members = {f"ecgen-radiology/{n}.xml": report_xml(f"CXR{n}", images=()) for n in range(40)}
    good = make_tgz(tmp_path / "good.tgz", members)
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    random_file = tmp_path / "random.tgz"
    random_file.write_bytes(b"\x00" + random.Random(2).randbytes(4095))  # seeded; no "<", no gzip magic
    empty = tmp_path / "empty.tgz"
    empty.write_bytes(b"")
    for path, message in ((truncated, "truncated or corrupt"), (random_file, "neither"), (empty, "neither")):
        with pytest.raises(ReportError, match=message) as caught:
            load_studies(path)
        assert caught.value.path == str(path)
    assert len(load_studies(good)) == 40


def test_archive_without_reports_duplicates_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no Open-i XML reports"):
        load_studies(make_tgz(tmp_path / "none.tgz", {"README.txt": b"hello"}))
    dup = make_tgz(tmp_path / "dup.tgz", {"a/1.xml": report_xml(), "a/2.xml": report_xml()})
    with pytest.raises(ReportError, match="duplicate report CXR7") as caught:
        load_studies(dup)
    assert caught.value.path == f"{dup}:a/2.xml"
    with pytest.raises(ReportError, match="not found"):
        load_studies(tmp_path / "missing.tgz")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ReportError, match="no Open-i reports here"):
        load_studies(tmp_path / "emptydir")
