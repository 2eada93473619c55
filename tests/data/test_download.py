"""`cxrsearch data download`: resumable, verified downloads (extraction: test_extract.py).

Everything is served by the local HTTP server of ``tests/data/http_server.py``; the tarballs are
built in the tests. No test touches the internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
from pathlib import Path

import pytest

from cxrsearch.data.download import download_openi, load_dataset
from cxrsearch.data.fetch import fetch, sha256_file
from cxrsearch.errors import ConfigError, DownloadError
from tests.data.http_server import PNG_TGZ_ENTRIES, make_tgz, serving


@pytest.fixture()
def server():
    with serving() as httpd:
        yield httpd


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXRSEARCH_OPENI_URL", raising=False)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _test_dataset(reports: bytes, png: bytes, png_sha: str | None = None, png_size: int | None = None):
    """The packaged Open-i manifest with the reports' expected values replaced by the test tarball's."""
    base = load_dataset("openi")
    files = dict(base.files)
    files["reports"] = dataclasses.replace(files["reports"], size=len(reports), sha256=_sha(reports))
    files["png"] = dataclasses.replace(files["png"], size=png_size, sha256=png_sha)
    return dataclasses.replace(base, files=files)


def _gets(server) -> list[tuple[str, str, dict[str, str]]]:
    return [r for r in server.state.requests if r[0] == "GET"]


# --------------------------------------------------------------------------- fetch
def test_fetch_downloads_verifies_and_records_sha256(server, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    server.state.files["blob.tgz"] = data
    events = []
    result = fetch(
        server.url + "blob.tgz",
        tmp_path / "blob.tgz",
        expected_size=len(data),
        expected_sha256=_sha(data),
        progress=events.append,
        timeout=5,
    )
    assert result.fetched and result.resumed_from == 0 and result.sha256 == _sha(data)
    assert (tmp_path / "blob.tgz").read_bytes() == data
    assert (tmp_path / "blob.tgz.sha256").read_text() == f"{_sha(data)}  blob.tgz\n"  # sha256sum -c format
    assert not list(tmp_path.glob("*.part*"))
    downloads = [e for e in events if e.stage == "download"]
    assert downloads[-1].done == downloads[-1].total == len(data)
    # already complete and verified: not fetched again
    again = fetch(server.url + "blob.tgz", tmp_path / "blob.tgz", expected_sha256=_sha(data), timeout=5)
    assert not again.fetched and len(_gets(server)) == 1


def test_resume_from_partial_part_uses_range(server, tmp_path: Path) -> None:
    data = b"0123456789abcdef" * 20000
    server.state.files["big.tgz"] = data
    (tmp_path / "big.tgz.part").write_bytes(data[:100_000])
    result = fetch(server.url + "big.tgz", tmp_path / "big.tgz", expected_sha256=_sha(data), timeout=5)
    assert _gets(server)[-1][2]["Range"] == "bytes=100000-"
    assert result.resumed_from == 100_000 and result.sha256 == _sha(data)
    assert sha256_file(tmp_path / "big.tgz") == _sha(data)


def test_complete_part_is_finished_without_refetching(server, tmp_path: Path) -> None:
    data = b"all bytes arrived before the rename" * 100
    server.state.files["done.tgz"] = data
    (tmp_path / "done.tgz.part").write_bytes(data)
    result = fetch(server.url + "done.tgz", tmp_path / "done.tgz", expected_sha256=_sha(data), timeout=5)
    assert _gets(server)[-1][2]["Range"] == f"bytes={len(data)}-"  # answered 416: nothing left to send
    assert result.resumed_from == len(data) and (tmp_path / "done.tgz").read_bytes() == data


def test_interrupted_transfer_leaves_resumable_part(server, tmp_path: Path) -> None:
    data = b"radiograph bytes " * 30000
    server.state.files["img.tgz"] = data
    server.state.cut_after["img.tgz"] = 123_457
    url = server.url + "img.tgz"
    with pytest.raises(DownloadError, match="run the same command again to resume") as info:
        fetch(url, tmp_path / "img.tgz", timeout=5)
    assert url in str(info.value)
    assert (tmp_path / "img.tgz.part").stat().st_size == 123_457 and not (tmp_path / "img.tgz").exists()
    result = fetch(url, tmp_path / "img.tgz", timeout=5)
    first, second = _gets(server)
    assert "Range" not in first[2] and second[2]["Range"] == "bytes=123457-"
    assert second[2]["If-Range"] == '"' + _sha(data)[:16] + '"'  # the ETag from the first response
    assert result.resumed_from == 123_457 and (tmp_path / "img.tgz").read_bytes() == data


def test_ctrl_c_leaves_resumable_part(server, tmp_path: Path) -> None:
    data = bytes(range(251)) * 10_000  # 2.5 MB: several 1 MiB chunks
    server.state.files["c.tgz"] = data

    def interrupt(event) -> None:
        if event.stage == "download" and event.done >= 1 << 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch(server.url + "c.tgz", tmp_path / "c.tgz", progress=interrupt, timeout=5)
    kept = (tmp_path / "c.tgz.part").stat().st_size
    assert 0 < kept < len(data) and not (tmp_path / "c.tgz").exists()
    result = fetch(server.url + "c.tgz", tmp_path / "c.tgz", expected_sha256=_sha(data), timeout=5)
    assert result.resumed_from == kept and (tmp_path / "c.tgz").read_bytes() == data


def test_part_of_a_changed_file_is_restarted_not_spliced(server, tmp_path: Path) -> None:
    old, new = b"old version " * 10000, b"new version " * 12000
    server.state.files["r.tgz"] = old
    server.state.cut_after["r.tgz"] = 50_000
    with pytest.raises(DownloadError):
        fetch(server.url + "r.tgz", tmp_path / "r.tgz", timeout=5)
    server.state.files["r.tgz"] = new  # the server's file changed: its ETag no longer matches If-Range
    result = fetch(server.url + "r.tgz", tmp_path / "r.tgz", timeout=5)
    assert result.resumed_from == 0 and (tmp_path / "r.tgz").read_bytes() == new


@pytest.mark.parametrize("bad", ["size", "sha256"])
def test_corrupt_download_is_refused_and_deleted(server, tmp_path: Path, bad: str) -> None:
    data = b"tampered" * 5000
    server.state.files["x.tgz"] = data
    expect = {"size": {"expected_size": len(data) + 1}, "sha256": {"expected_sha256": "0" * 64}}[bad]
    with pytest.raises(DownloadError, match=bad if bad == "sha256" else "bytes") as info:
        fetch(server.url + "x.tgz", tmp_path / "x.tgz", timeout=5, **expect)
    assert server.url + "x.tgz" in str(info.value)
    assert not list(tmp_path.iterdir())  # no archive, no .part, no sidecar


def test_server_down_names_the_url(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/NLMCXR_reports.tgz"
    with pytest.raises(DownloadError) as info:
        fetch(url, tmp_path / "NLMCXR_reports.tgz", timeout=5)
    assert str(info.value).startswith(url + ": cannot download") and "\n" not in str(info.value)


def test_http_error_names_the_url(server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch(server.url + "missing.tgz", tmp_path / "missing.tgz", timeout=5)
    assert server.url + "missing.tgz" in str(info.value)


def test_hand_downloaded_file_is_adopted_after_a_size_check(server, tmp_path: Path) -> None:
    data = b"fetched with a browser" * 1000
    server.state.files["png.tgz"] = data
    (tmp_path / "png.tgz").write_bytes(data)
    result = fetch(server.url + "png.tgz", tmp_path / "png.tgz", timeout=5)
    assert not result.fetched and not _gets(server)  # only a HEAD request
    assert (tmp_path / "png.tgz.sha256").read_text().split()[0] == _sha(data)
    (tmp_path / "png.tgz.sha256").unlink()
    (tmp_path / "png.tgz").write_bytes(data[:-1])
    with pytest.raises(DownloadError, match="remove it to download again"):
        fetch(server.url + "png.tgz", tmp_path / "png.tgz", timeout=5)


# --------------------------------------------------------------------------- download_openi
def test_download_openi_fetches_extracts_and_is_idempotent(server, tmp_path: Path) -> None:
    reports = make_tgz([("ecgen-radiology/1.xml", b"<eCitation/>", {})])
    png = make_tgz(PNG_TGZ_ENTRIES)
    server.state.files.update({"NLMCXR_reports.tgz": reports, "NLMCXR_png.tgz": png})
    dataset = _test_dataset(reports, png)
    dest = tmp_path / "data"
    first = download_openi(dest, images="png", url=server.url, dataset=dataset, timeout=5)
    assert [(f.key, f.status) for f in first] == [("reports", "downloaded"), ("png", "downloaded")]
    assert (dest / "NLMCXR_reports.tgz").read_bytes() == reports  # kept as a tarball, not extracted
    assert not (dest / "reports").exists()
    assert first[1].extracted_to == dest / "images" / "png" and first[1].files == 3
    assert (dest / "images" / "png" / "CXR2_IM-0652-1001.png").read_bytes() == PNG_TGZ_ENTRIES[1][1]
    assert (dest / "NLMCXR_png.tgz.sha256").read_text().split()[0] == _sha(png)
    n_requests = len(_gets(server))
    second = download_openi(dest, images="png", url=server.url, dataset=dataset, timeout=5)
    assert [f.status for f in second] == ["present", "present"] and len(_gets(server)) == n_requests
    (dest / "NLMCXR_png.tgz").unlink()  # the extraction record alone keeps the images step done
    third = download_openi(dest, images="png", url=server.url, dataset=dataset, timeout=5)
    assert third[1].status == "present" and third[1].size is None and len(_gets(server)) == n_requests


def test_download_openi_refuses_a_corrupt_image_archive(server, tmp_path: Path) -> None:
    reports, png = make_tgz([("ecgen-radiology/1.xml", b"<eCitation/>", {})]), make_tgz(PNG_TGZ_ENTRIES)
    server.state.files.update({"NLMCXR_reports.tgz": reports, "NLMCXR_png.tgz": png})
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match="does not match the expected"):
        download_openi(dest, images="png", url=server.url, dataset=_test_dataset(reports, png, png_sha="1" * 64))
    with pytest.raises(DownloadError, match="server reports"):
        download_openi(dest, images="png", url=server.url, dataset=_test_dataset(reports, png, png_size=10))
    assert not (dest / "images").exists() and not list(dest.glob("NLMCXR_png*"))


def test_download_openi_traversal_writes_nothing_outside_dest(server, tmp_path: Path) -> None:
    reports = make_tgz([("ecgen-radiology/1.xml", b"<eCitation/>", {})])
    png = make_tgz([PNG_TGZ_ENTRIES[0], ("../../evil.png", b"x", {})])
    server.state.files.update({"NLMCXR_reports.tgz": reports, "NLMCXR_png.tgz": png})
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"NLMCXR_png\.tgz member '\.\./\.\./evil\.png': refused"):
        download_openi(dest, images="png", url=server.url, dataset=_test_dataset(reports, png))
    assert not (dest / "images" / "png").exists()
    assert not list(tmp_path.rglob("evil.png"))
    # the refused archive is not kept with its checksum (a rerun would find it "present" and fail again)
    assert not (dest / "NLMCXR_png.tgz").exists() and not (dest / "NLMCXR_png.tgz.sha256").exists()
    server.state.files["NLMCXR_png.tgz"] = make_tgz(PNG_TGZ_ENTRIES)  # the mirror fixed it: a rerun fetches it
    assert download_openi(dest, images="png", url=server.url, dataset=_test_dataset(reports, b""))[1].files


def test_mirror_url_from_environment_and_bad_options(server, tmp_path: Path, monkeypatch) -> None:
    reports = make_tgz([("ecgen-radiology/1.xml", b"<eCitation/>", {})])
    server.state.files["NLMCXR_reports.tgz"] = reports
    monkeypatch.setenv("CXRSEARCH_OPENI_URL", server.url.rstrip("/"))
    (only,) = download_openi(tmp_path, dataset=_test_dataset(reports, b""), timeout=5)
    assert only.url == server.url + "NLMCXR_reports.tgz"
    with pytest.raises(ConfigError, match="--images"):
        download_openi(tmp_path, images="jpeg")
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("mimic")


def test_packaged_reports_checksum_matches_the_torchxrayvision_copy(reports_tgz: Path) -> None:
    reports = load_dataset("openi").files["reports"]
    assert reports.size == reports_tgz.stat().st_size and reports.sha256 == sha256_file(reports_tgz)
    assert "torchxrayvision" in reports.checksum_origin


# --------------------------------------------------------------------------- CLI
def _run_cli(*args: str):
    from typer.testing import CliRunner

    from cxrsearch.cli.main import app

    return CliRunner().invoke(app, ["data", "download", *args])


def test_cli_downloads_the_real_reports_tarball_and_images(server, tmp_path: Path, reports_tgz: Path) -> None:
    # the real reports tarball passes the packaged size + sha256 check; the image set is built here
    png = make_tgz(PNG_TGZ_ENTRIES)
    server.state.files.update({"NLMCXR_reports.tgz": reports_tgz.read_bytes(), "NLMCXR_png.tgz": png})
    dest = tmp_path / "openi"
    result = _run_cli("openi", "--dest", str(dest), "--images", "png", "--base-url", server.url)
    assert result.exit_code == 0, result.output
    assert (dest / "NLMCXR_reports.tgz").read_bytes() == reports_tgz.read_bytes()
    assert (dest / "images" / "png" / "sub" / "CXR3_IM-1384-1001.png").is_file()
    assert "NLMCXR_png.tgz" in result.stdout and "downloaded" in result.stdout
    again = _run_cli("openi", "--dest", str(dest), "--images", "png", "--base-url", server.url)
    assert again.exit_code == 0 and "present" in again.stdout and "downloaded" not in again.stdout
    # the layout is what the rest of the data layer reads: the folder itself, and images/ recursively
    from typer.testing import CliRunner

    from cxrsearch.cli.main import app
    from cxrsearch.data.pairing import index_images

    info = CliRunner().invoke(app, ["data", "info", str(dest), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["reports"] == 3955
    assert sorted(index_images(dest / "images")) == ["CXR1_1_IM-0001-3001", "CXR2_IM-0652-1001", "CXR3_IM-1384-1001"]


def test_cli_defaults_to_the_data_dir_and_env_mirror(server, reports_tgz: Path, monkeypatch) -> None:
    from cxrsearch import paths

    server.state.files["NLMCXR_reports.tgz"] = reports_tgz.read_bytes()
    monkeypatch.setenv("CXRSEARCH_OPENI_URL", server.url)
    result = _run_cli("openi")
    assert result.exit_code == 0, result.output
    assert (paths.data_dir() / "NLMCXR_reports.tgz").is_file()  # $CXRSEARCH_DATA, a tmp dir in tests


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    unknown = _run_cli("mimic", "--dest", str(tmp_path))
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == "error: mimic: unknown dataset; available: openi"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = _run_cli("openi", "--dest", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}/c")
    assert down.exit_code == 1 and len(down.stderr.strip().splitlines()) == 1
    assert down.stderr.startswith(f"error: http://127.0.0.1:{port}/c/NLMCXR_reports.tgz: cannot download")
    bad = _run_cli("openi", "--dest", str(tmp_path), "--images", "jpeg")
    assert bad.exit_code != 0 and "'jpeg' is not one of" in bad.stderr  # the option parser: none|png|dicom
