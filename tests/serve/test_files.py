"""Only files under the configured images roots are ever read (resolve_image), and the settings
refuse an exposed bind without a token."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxrsearch.errors import ConfigError, QueryError
from cxrsearch.serve.files import resolve_image
from cxrsearch.serve.settings import ServeSettings, is_loopback


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "images"
    (root / "png").mkdir(parents=True)
    (root / "png" / "a.png").write_bytes(b"x")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser")
    return root, secret


def image(path: str) -> dict:
    return {"kind": "image", "image_path": path}


def test_relative_and_absolute_paths_under_a_root_resolve(roots) -> None:
    root, _ = roots
    assert resolve_image(image("png/a.png"), [root]) == root / "png" / "a.png"
    assert resolve_image(image(str(root / "png" / "a.png")), [root]) == root / "png" / "a.png"
    assert resolve_image(image("png/./a.png"), [root]) == root / "png" / "a.png"


def test_report_points_have_no_file(roots) -> None:
    root, _ = roots
    assert resolve_image({"kind": "report", "image_path": None}, [root]) is None
    assert resolve_image({"kind": "image"}, [root]) is None


@pytest.mark.parametrize("raw", ["../secret.txt", "png/../../secret.txt", "png/../../../etc/passwd"])
def test_relative_paths_may_not_climb_out(roots, raw: str) -> None:
    root, _ = roots
    with pytest.raises(QueryError, match="climbs out"):
        resolve_image(image(raw), [root])


def test_absolute_paths_outside_every_root_are_refused(roots) -> None:
    root, secret = roots
    for raw in (str(secret), "/etc/passwd", f"{root}/../secret.txt", f"{root}/png/../../secret.txt"):
        with pytest.raises(QueryError, match="outside the configured images folders"):
            resolve_image(image(raw), [root])


def test_a_sibling_folder_with_the_root_as_prefix_is_not_under_it(roots, tmp_path: Path) -> None:
    root, _ = roots
    evil = tmp_path / "images-evil"
    evil.mkdir()
    (evil / "x.png").write_bytes(b"x")
    with pytest.raises(QueryError, match="outside"):
        resolve_image(image(str(evil / "x.png")), [root])


def test_missing_files_directories_and_nul_bytes_are_refused(roots) -> None:
    root, _ = roots
    with pytest.raises(QueryError, match="no longer"):
        resolve_image(image("png/gone.png"), [root])
    with pytest.raises(QueryError, match="no longer"):
        resolve_image(image("png"), [root])
    with pytest.raises(QueryError, match="not a file name"):
        resolve_image(image("png/a.png\x00.txt"), [root])
    with pytest.raises(QueryError, match="no images folder"):
        resolve_image(image("png/a.png"), [])


def test_links_inside_a_root_are_the_roots_owner_s(roots, tmp_path: Path) -> None:
    root, secret = roots
    os.symlink(secret, root / "png" / "linked.png")
    assert resolve_image(image("png/linked.png"), [root]) == root / "png" / "linked.png"


def test_second_root_serves_absolute_paths_only(roots, tmp_path: Path) -> None:
    root, _ = roots
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.png").write_bytes(b"x")
    assert resolve_image(image(str(other / "b.png")), [root, other]) == other / "b.png"
    with pytest.raises(QueryError):
        resolve_image(image("b.png"), [root, other])  # relative: joined to the first root only


def test_binding_beyond_loopback_needs_a_token() -> None:
    assert ServeSettings().host == "127.0.0.1"
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        ServeSettings(host=host)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="--token"):
            ServeSettings(host=host)
        ServeSettings(host=host, token="a-long-enough-secret-token")
    with pytest.raises(ConfigError, match="too short"):
        ServeSettings(host="0.0.0.0", token="short")
    with pytest.raises(ConfigError, match="port"):
        ServeSettings(port=0)
