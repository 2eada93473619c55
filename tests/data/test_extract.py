"""Safe extraction of downloaded tarballs: all or nothing, nothing outside the destination."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from cxrsearch.data.extract import MARKER, safe_extract
from cxrsearch.errors import DownloadError
from tests.data.http_server import PNG_TGZ_ENTRIES, make_tgz

EVIL = {
    "traversal": ("../evil.txt", b"x", {}),
    "nested traversal": ("images/../../evil.txt", b"x", {}),
    "absolute": ("/tmp/cxrsearch-evil.txt", b"x", {}),
    "symlink escape": ("images/escape", None, {"type": tarfile.SYMTYPE, "linkname": "../../outside"}),
    "absolute symlink": ("images/etc", None, {"type": tarfile.SYMTYPE, "linkname": "/etc"}),
    "hardlink escape": ("images/hard", None, {"type": tarfile.LNKTYPE, "linkname": "../outside"}),
    "device": ("images/dev", None, {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}),
    "fifo": ("images/fifo", None, {"type": tarfile.FIFOTYPE}),
}


@pytest.mark.parametrize("case", list(EVIL))
def test_unsafe_members_are_refused_naming_the_member(tmp_path: Path, case: str) -> None:
    good = ("images/ok.png", b"fine", {})
    archive = tmp_path / "dest" / "evil.tgz"
    archive.parent.mkdir()
    archive.write_bytes(make_tgz([good, EVIL[case]]))
    target = tmp_path / "dest" / "images" / "png"
    with pytest.raises(DownloadError, match="refused") as info:
        safe_extract(archive, target, sha256="0" * 64)
    assert repr(EVIL[case][0]) in str(info.value)  # names the member
    assert not target.exists() and not list(target.parent.glob(".*extracting"))  # all or nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]  # nothing written outside dest
    assert not Path("/tmp/cxrsearch-evil.txt").exists()


def test_symlink_chain_escape_is_caught_by_the_data_filter(tmp_path: Path) -> None:
    # each link looks harmless on its own ('a/b/c' -> '..' is lexically 'a'), but a/b is itself '..'
    archive = tmp_path / "dest" / "chain.tgz"
    archive.parent.mkdir()
    archive.write_bytes(
        make_tgz(
            [
                ("a", None, {"type": tarfile.DIRTYPE, "mode": 0o755}),
                ("a/b", None, {"type": tarfile.SYMTYPE, "linkname": ".."}),
                ("a/b/c", None, {"type": tarfile.SYMTYPE, "linkname": ".."}),
                ("a/b/c/evil.txt", b"x", {}),
            ]
        )
    )
    with pytest.raises(DownloadError, match="chain.tgz member 'a/b/c': refused by the tar data filter"):
        safe_extract(archive, tmp_path / "dest" / "out", sha256="0" * 64)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["chain.tgz", "dest"]


def test_extraction_is_complete_and_recorded(tmp_path: Path) -> None:
    archive = tmp_path / "png.tgz"
    archive.write_bytes(make_tgz(PNG_TGZ_ENTRIES))
    result = safe_extract(archive, tmp_path / "images" / "png", sha256="ab" * 32)
    target = tmp_path / "images" / "png"
    assert (result.members, result.files) == (5, 3)
    assert (target / "sub" / "link.png").read_bytes() == PNG_TGZ_ENTRIES[3][1]  # an inside link is fine
    assert '"sha256": "' + "ab" * 32 in (target / MARKER).read_text()
    with pytest.raises(DownloadError, match="already exists"):
        safe_extract(archive, target, sha256="ab" * 32)


def test_broken_archive_is_a_download_error(tmp_path: Path) -> None:
    archive = tmp_path / "png.tgz"
    archive.write_bytes(make_tgz(PNG_TGZ_ENTRIES)[:300])
    with pytest.raises(DownloadError, match="cannot extract") as info:
        safe_extract(archive, tmp_path / "out", sha256="0" * 64)
    assert str(archive) in str(info.value) and not (tmp_path / "out").exists()
