"""The issue's attacks, built into packaged models: check-bundle and predict must run none of them.

Every payload would create a sentinel file if it ran. Config payloads are shown to be live (``--trust``, which
runs the bundle's own configs, does create the sentinel), then: an attacker who does not re-hash is refused
with one line naming the changed file; one who re-hashes an unsigned package gets a prediction from the
manifest only (the payload is inert, masks unchanged); one who re-hashes a signed package is refused under
``--require-signed``.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg import cli
from medseg.sharing.archive import make_zip
from medseg.sharing.manifest import MANIFEST_NAME, hash_files
from medseg.sharing.signing import new_keys, sign_manifest
from tests.medseg.sharing.conftest import write_rgb_images


class Evil:
    """A pickle that creates ``path`` when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def _edit(folder: Path, change) -> None:
    path = folder / "configs" / "inference.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config, indent=2))


def _dropout(expression: str):
    """Put ``expression`` (evaluating to 0.0) where building the network evaluates it."""
    return lambda c: c["network_def"].update(dropout=expression)


def expression_literal(folder: Path, s: Path) -> None:
    inner = f"$__import__('os').system('touch {s}') * 0.0"
    _edit(folder, _dropout(f'$monai.bundle.ConfigExpression(config="{inner}", id="x").evaluate()'))


def numpy_load_positional(folder: Path, s: Path) -> None:
    (folder / "models" / "evil.npy").write_bytes(pickle.dumps(Evil(s)))
    _edit(folder, _dropout("$float(0 * len(str(numpy.load(@bundle_root + '/models/evil.npy', None, True))))"))


def torch_load_positional(folder: Path, s: Path) -> None:
    (folder / "models" / "evil.pt").write_bytes(pickle.dumps(Evil(s)))
    _edit(folder, _dropout("$torch.load(@bundle_root + '/models/evil.pt', None, torch.serialization.pickle)"))


def numpy_savetxt(folder: Path, s: Path) -> None:
    _edit(folder, _dropout(f"$float(0 * len(str(numpy.savetxt('{s}', numpy.zeros(1)))))"))


def import_system(folder: Path, s: Path) -> None:
    _edit(folder, _dropout(f"$__import__('os').system('touch {s}') * 0.0"))


def target_os_system(folder: Path, s: Path) -> None:
    _edit(folder, _dropout({"_target_": "os.system", "command": f"touch {s}"}))


def requires(folder: Path, s: Path) -> None:
    _edit(folder, lambda c: c["network_def"].update(_requires_=f"$__import__('os').system('touch {s}')"))


def zeroing_postprocessing(folder: Path, s: Path) -> None:
    """The edited inference.json of the issue: every prediction zeroed (and a sentinel to show it ran)."""
    zero = {"_target_": "Lambdad", "keys": "pred", "func": f"$lambda x: x * 0 + __import__('os').system('touch {s}')"}
    _edit(folder, lambda c: c["postprocessing"]["transforms"].insert(2, zero))


def logging_conf(folder: Path, s: Path) -> None:
    (folder / "configs" / "logging.conf").write_text(
        f"[handlers]\nkeys=h\n[handler_h]\nclass=StreamHandler\nargs=(__import__('os').system('touch {s}'),)\n"
    )


# name -> (payload, the first file check-bundle names, the pickle it ships (refused even when re-hashed) or None,
#          whether the --trust path (network, pre- and post-processing of inference.json) runs it)
CONFIG_PAYLOADS = {
    "ConfigExpression from a string literal": (expression_literal, "configs/inference.json", None, True),
    "numpy.load allow_pickle by position": (numpy_load_positional, "configs/inference.json", "models/evil.npy", True),
    "torch.load pickle_module by position": (torch_load_positional, "configs/inference.json", "models/evil.pt", True),
    "numpy.savetxt writes a file": (numpy_savetxt, "configs/inference.json", None, True),
    "__import__ expression": (import_system, "configs/inference.json", None, True),
    "_target_ os.system": (target_os_system, "configs/inference.json", None, True),
    "_requires_": (requires, "configs/inference.json", None, True),
    "edited inference.json zeroing predictions": (zeroing_postprocessing, "configs/inference.json", None, True),
    "logging.conf handler args": (logging_conf, "configs/logging.conf", None, False),
}


def _rehash(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"] = hash_files(folder)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("attack_images") / "in"
    write_rgb_images(folder)
    return folder


@pytest.fixture(scope="module")
def clean_masks(rgb_package, images, tmp_path_factory) -> dict:
    from medseg.sharing.predict import predict

    out = tmp_path_factory.mktemp("clean") / "out"
    predict(rgb_package, images, out)
    return {p.name: np.asarray(Image.open(p)) for p in sorted(out.glob("*_mask.png"))}


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", CONFIG_PAYLOADS)
def test_config_payload_never_runs(name, package_copy, images, clean_masks, tmp_path, capsys):
    payload, changed, shipped_pickle, trust_runs = CONFIG_PAYLOADS[name]
    sentinel = tmp_path / "SENTINEL"
    payload(package_copy, sentinel)
    problem = f"{changed}: sha256 does not match" if changed == "configs/inference.json" else f"{changed}: not listed"

    # not re-hashed: refused, one line naming the changed file
    code, out, _ = _cli(["check-bundle", str(package_copy), "--quiet"], capsys)
    assert code == 2 and problem in out
    code, _, err = _cli(["predict", "--bundle", str(package_copy), "--input", str(images), "--output",
                         str(tmp_path / "o1")], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and problem in err
    assert not sentinel.exists() and not (tmp_path / "o1").exists()

    # re-hashed (unsigned): a shipped pickle is still refused; otherwise the manifest is intact, so predict runs
    # it and only it (same masks as the clean package), and check-bundle lists the configs' code as information
    _rehash(package_copy)
    code, out, _ = _cli(["check-bundle", str(package_copy)], capsys)
    assert "information for those who would --trust" in out and changed in out
    command = ["predict", "--bundle", str(package_copy), "--input", str(images), "--output", str(tmp_path / "o2")]
    if shipped_pickle:
        assert code == 2 and f"{shipped_pickle}: is a" in out and "pickle" in out
        code, _, err = _cli(command, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and shipped_pickle in err
    else:
        assert code == 0
        assert _cli(command, capsys)[0] == 0
        got = {p.name: np.asarray(Image.open(p)) for p in sorted((tmp_path / "o2").glob("*_mask.png"))}
        assert got.keys() == clean_masks.keys() and all(np.array_equal(got[k], clean_masks[k]) for k in got)
    assert not sentinel.exists()

    # the payload is live: running the bundle's own configs (--trust) does run it
    if trust_runs:
        _cli(["predict", "--bundle", str(package_copy), "--input", str(images), "--output", str(tmp_path / "o3"),
              "--trust"], capsys)  # fmt: skip
        assert sentinel.exists(), f"{name}: the payload did not run under --trust, so this test proves nothing"


def test_rehashed_payload_in_signed_package_refused(package_copy, images, tmp_path, capsys):
    keys = new_keys(tmp_path / "keys")
    sign_manifest(package_copy / MANIFEST_NAME, keys.private, package_copy / "manifest.sig")
    sentinel = tmp_path / "SENTINEL"
    import_system(package_copy, sentinel)
    _rehash(package_copy)
    args = ["--require-signed", "--trusted-keys", str(tmp_path / "keys")]
    code, _, err = _cli(["predict", "--bundle", str(package_copy), "--input", str(images), "--output",
                         str(tmp_path / "out"), *args], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "manifest.json: was changed after it was signed" in err
    code, out, _ = _cli(["check-bundle", str(package_copy), *args], capsys)
    assert code == 2 and "was changed after it was signed" in out
    assert not sentinel.exists()


def test_swapped_weights_with_updated_hash(package_copy, images, tmp_path, capsys):
    """The issue's swapped model: detectable only with a signature, which names the manifest."""
    keys = new_keys(tmp_path / "keys")
    sign_manifest(package_copy / MANIFEST_NAME, keys.private, package_copy / "manifest.sig")
    from safetensors.torch import load_file, save_file

    weights = package_copy / "models" / "model.safetensors"
    save_file({k: v * 0 for k, v in load_file(weights).items()}, str(weights))
    code, _, err = _cli(["predict", "--bundle", str(package_copy), "--input", str(images), "--output",
                         str(tmp_path / "o1")], capsys)  # fmt: skip
    assert code == 2 and "models/model.safetensors: sha256 does not match" in err  # not re-hashed
    _rehash(package_copy)
    args = ["--require-signed", "--trusted-keys", str(tmp_path / "keys")]
    code, _, err = _cli(["predict", "--bundle", str(package_copy), "--input", str(images), "--output",
                         str(tmp_path / "o2"), *args], capsys)  # fmt: skip
    assert code == 2 and "manifest.json: was changed after it was signed" in err
    # re-signed with the attacker's own key: not a trusted key
    attacker = new_keys(tmp_path / "attacker")
    sign_manifest(package_copy / MANIFEST_NAME, attacker.private, package_copy / "manifest.sig")
    code, _, err = _cli(["predict", "--bundle", str(package_copy), "--input", str(images), "--output",
                         str(tmp_path / "o3"), *args], capsys)  # fmt: skip
    assert code == 2 and "not among the trusted keys" in err and not (tmp_path / "o3").exists()


@pytest.mark.parametrize(
    "protocol, expected",
    [(4, "models/model.safetensors: is a Python pickle"), (0, "models/model.safetensors: is not a safetensors")],
)
def test_malicious_weights_file_is_never_unpickled(protocol, expected, package_copy, images, tmp_path, capsys):
    """A pickle in place of the safetensors weights (re-hashed): refused by its header, or by safetensors."""
    sentinel = tmp_path / "SENTINEL"
    (package_copy / "models" / "model.safetensors").write_bytes(pickle.dumps({"w": Evil(sentinel)}, protocol))
    _rehash(package_copy)
    code, _, err = _cli(["predict", "--bundle", str(package_copy), "--input", str(images), "--output",
                         str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not sentinel.exists()


def test_manifest_cannot_name_code(package_copy, images, tmp_path, capsys):
    """A manifest naming a module, an expression or an unknown step is invalid, whatever its hashes."""
    manifest = json.loads((package_copy / MANIFEST_NAME).read_text())
    for edit, expected in (
        (lambda m: m["network"].update(name="os.system"), "network 'os.system' is not registered"),
        (lambda m: m["preprocessing"].append({"name": "$__import__('os')"}), "preprocessing/"),
        (lambda m: m["network"]["arguments"].update(act="$eval('1')"), "argument 'act'"),
        (lambda m: m.update(run=["$print(1)"]), "Additional properties"),
    ):
        changed = json.loads(json.dumps(manifest))
        edit(changed)
        (package_copy / MANIFEST_NAME).write_text(json.dumps(changed))
        code, _, err = _cli(["predict", "--bundle", str(package_copy), "--input", str(images), "--output",
                             str(tmp_path / "out")], capsys)  # fmt: skip
        assert code == 2 and "manifest.json" in err and expected in err, err
        assert len(err.strip().splitlines()) == 1


def _zip_with(package: Path, tmp_path: Path, name: str, write) -> Path:
    zip_path = tmp_path / f"{name}.zip"
    make_zip(package, zip_path)
    with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        write(archive, package.name)
    return zip_path


def _oversized(archive: zipfile.ZipFile, top: str) -> None:
    with archive.open(f"{top}/docs/big.bin", "w", force_zip64=True) as f:
        chunk = bytes(16 * 1024 * 1024)
        for _ in range(300 // 16 + 1):  # 300 MB of zeros: a few hundred kB compressed
            f.write(chunk)


def _nested(archive: zipfile.ZipFile, top: str) -> None:
    archive.writestr(f"{top}/docs/inner.bin", b"PK\x03\x04" + bytes(100))


def _traversal(archive: zipfile.ZipFile, top: str) -> None:
    archive.writestr(f"{top}/../../escape.txt", b"x")


ARCHIVE_PAYLOADS = {
    "oversized entry": (_oversized, "more than the per-file limit 256 MB"),
    "nested archive": (_nested, "nested archives are refused"),
    "path traversal": (_traversal, "contains a '..' component"),
}


@pytest.mark.parametrize("name", ARCHIVE_PAYLOADS)
def test_archive_payloads_refused_before_extraction(name, rgb_package, images, tmp_path, capsys):
    write, expected = ARCHIVE_PAYLOADS[name]
    zip_path = _zip_with(rgb_package, tmp_path, name.replace(" ", "_"), write)
    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("medseg-bundle-*"))
    predict = ["predict", "--bundle", str(zip_path), "--input", str(images), "--output", str(tmp_path / "o")]
    for command in (["check-bundle", str(zip_path)], predict):
        code, _, err = _cli(command, capsys)
        assert code == 2 and expected in err and zip_path.name in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path.parent / "escape.txt").exists()
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("medseg-bundle-*")) == before


def test_extraction_limits_are_configurable(rgb_package, images, tmp_path, capsys):
    zip_path = tmp_path / "p.zip"
    make_zip(rgb_package, zip_path)
    code, _, err = _cli(["check-bundle", str(zip_path), "--max-files", "3"], capsys)
    assert code == 2 and "more than the limit 3" in err
    code, _, err = _cli(["check-bundle", str(zip_path), "--max-total-mb", "0.01"], capsys)
    assert code == 2 and "more than the limit" in err and "--max_total_mb" in err
    assert _cli(["check-bundle", str(zip_path)], capsys)[0] == 0


def test_shipped_code_and_nested_archives_in_a_folder_fail(package_copy, capsys):
    (package_copy / "scripts").mkdir()
    (package_copy / "scripts" / "evil.py").write_text("import os\n")
    (package_copy / "docs" / "more.zip").write_bytes(b"PK\x03\x04")
    _rehash(package_copy)
    code, out, _ = _cli(["check-bundle", str(package_copy)], capsys)
    assert code == 2
    assert "scripts/evil.py: the bundle ships code" in out and "docs/more.zip: is an archive" in out


def test_symlink_in_package_refused(package_copy, images, tmp_path, capsys):
    target = package_copy / "docs" / "README.md"
    link = package_copy / "docs" / "link.md"
    link.symlink_to(target)
    code, _, err = _cli(["predict", "--bundle", str(package_copy), "--input", str(images), "--output",
                         str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 2 and "docs/link.md" in err


def test_sentinel_helper_is_live(tmp_path):
    """The Evil pickle does run when unpickled without restriction (so the tests above can fail)."""
    sentinel = tmp_path / "SENTINEL"
    pickle.loads(pickle.dumps(Evil(sentinel)))
    assert sentinel.exists()
