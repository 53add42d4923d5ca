"""medseg keys / package --sign / --require-signed: Ed25519 over manifest.json, which hashes every other file."""

from __future__ import annotations

import json
import stat

import pytest

from medseg import cli
from medseg.sharing.check import check_bundle
from medseg.sharing.errors import SharingError
from medseg.sharing.signing import new_keys, sign_manifest, trusted_keys, verify_signature


def test_keys_new_command(tmp_path, capsys):
    assert cli.main(["keys", "new", "--out", str(tmp_path / "k"), "--name", "lab"]) == 0
    out = capsys.readouterr().out
    assert "lab.key" in out and "lab.pub" in out
    assert stat.S_IMODE((tmp_path / "k" / "lab.key").stat().st_mode) == 0o600
    assert cli.main(["keys", "new", "--out", str(tmp_path / "k"), "--name", "lab"]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_signed_package_verifies_and_names_what_changed(package_copy, tmp_path):
    keys = new_keys(tmp_path / "keys")
    sign_manifest(package_copy / "manifest.json", keys.private, package_copy / "manifest.sig")
    report = check_bundle(package_copy, trusted_keys=tmp_path / "keys", require_signed=True)
    assert report.passed and "valid signature" in report.signature
    (package_copy / "docs" / "README.md").write_text("edited")
    problems = check_bundle(package_copy, trusted_keys=tmp_path / "keys", require_signed=True).problems()
    assert problems == ["docs/README.md: sha256 does not match manifest.json: the file was changed after packaging"]


def test_unsigned_or_unverifiable_refused_when_required(package_copy, tmp_path):
    new_keys(tmp_path / "keys")
    report = check_bundle(package_copy, trusted_keys=tmp_path / "keys", require_signed=True)
    assert not report.passed and "not signed" in report.problems()[0]
    other = new_keys(tmp_path / "other")
    sign_manifest(package_copy / "manifest.json", other.private, package_copy / "manifest.sig")
    report = check_bundle(package_copy, trusted_keys=tmp_path / "keys", require_signed=True)
    assert "not among the trusted keys" in report.problems()[0]
    # without trusted keys, check-bundle says who signed, and that it could not verify it
    assert "not verified" in check_bundle(package_copy).signature


def test_bad_key_files_and_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SharingError, match="holds no .pub key"):
        trusted_keys(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.pub").write_text("not a key")
    with pytest.raises(SharingError, match="x.pub: is not a public key"):
        trusted_keys(tmp_path / "bad")
    (tmp_path / "m.json").write_text("{}")
    (tmp_path / "m.sig").write_text(json.dumps({"algorithm": "rsa", "key_id": "x", "signature": ""}))
    with pytest.raises(SharingError, match="is not a medseg signature"):
        verify_signature(tmp_path / "m.json", tmp_path / "m.sig", None)


def test_predict_require_signed_needs_trusted_keys(rgb_package, tmp_path, capsys):
    from tests.medseg.sharing.conftest import write_rgb_images

    write_rgb_images(tmp_path / "in")
    args = ["predict", "--bundle", str(rgb_package), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")]
    assert cli.main([*args, "--require-signed"]) == 2
    assert "--require_signed: needs --trusted_keys DIR" in capsys.readouterr().err
    new_keys(tmp_path / "keys")
    assert cli.main([*args, "--require-signed", "--trusted-keys", str(tmp_path / "keys")]) == 2
    err = capsys.readouterr().err
    assert "manifest.json: not signed" in err and len(err.strip().splitlines()) == 1


def test_package_sign_command(rgb_bundle, tmp_path, capsys):
    keys = new_keys(tmp_path / "keys")
    args = ["package", "--bundle", str(rgb_bundle), "--run", str(rgb_bundle / "models" / "model.pt"), "--out",
            str(tmp_path / "dist"), "--schema", str(rgb_bundle / "configs" / "meta_schema.json")]  # fmt: skip
    assert cli.main([*args, "--sign", str(tmp_path / "nope.key")]) == 2
    assert "signing key not found" in capsys.readouterr().err
    assert cli.main([*args, "--sign", str(keys.private), "--tta", "flips"]) == 0
    folder = next(p for p in (tmp_path / "dist").iterdir() if p.is_dir())
    assert json.loads((folder / "manifest.json").read_text())["inference"]["tta"] == {"flips": [[0], [1]]}
    zip_path = next((tmp_path / "dist").glob("*.zip"))
    assert cli.main(["check-bundle", str(zip_path), "--trusted-keys", str(tmp_path / "keys"), "--require-signed"]) == 0
    assert "valid signature by trusted key" in capsys.readouterr().out
