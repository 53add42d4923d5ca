"""Safe zip extraction: entries that escape the destination are refused before anything is written."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from medseg.sharing.archive import make_zip, open_bundle, safe_extract
from medseg.sharing.errors import SharingError


def _zip(path: Path, entries: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "bad_entry, reason",
    [
        ("../evil.txt", "'..'"),
        ("bundle/../../evil.txt", "'..'"),
        ("/tmp/evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
    ],
)
def test_escaping_entry_is_refused_and_nothing_written(tmp_path, bad_entry, reason):
    archive = _zip(tmp_path / "b.zip", {"bundle/configs/metadata.json": b"{}", bad_entry: b"x"})
    dest = tmp_path / "sub" / "out"
    with pytest.raises(SharingError, match=reason) as err:
        safe_extract(archive, dest)
    assert bad_entry in str(err.value) and "b.zip" in str(err.value)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "sub").iterdir()) if (tmp_path / "sub").exists() else True


def test_symlink_entry_is_refused(tmp_path):
    archive = _zip(tmp_path / "b.zip", {"bundle/configs/metadata.json": b"{}"}, link="bundle/models/model.pt")
    with pytest.raises(SharingError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_round_trip_and_bundle_root(rgb_bundle, tmp_path):
    archive = make_zip(rgb_bundle, tmp_path / "b.zip")
    with open_bundle(archive) as folder:
        assert (folder / "configs" / "metadata.json").read_bytes() == (
            rgb_bundle / "configs/metadata.json"
        ).read_bytes()
        extracted = folder
    assert not extracted.exists()  # the temporary extraction is removed


def test_zip_that_is_not_a_bundle(tmp_path):
    archive = _zip(tmp_path / "photos.zip", {"photos/a.txt": b"hello"})
    with pytest.raises(SharingError, match="not a MONAI bundle") as err:
        with open_bundle(archive):
            pass
    assert "photos.zip" in str(err.value)


def test_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "bundle.zip"
    path.write_text("not a zip")
    with pytest.raises(SharingError, match="not a zip archive"):
        with open_bundle(path):
            pass


def test_corrupt_entry_is_one_line(tmp_path):
    from medseg.sharing.archive import check_zip

    path = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("b/configs/metadata.json", b"{}" * 1000)
    data = bytearray(path.read_bytes())
    data[60:80] = bytes(20)  # inside the compressed data of the only entry
    path.write_bytes(bytes(data))
    with pytest.raises(SharingError, match="corrupt zip archive"):
        check_zip(path)
