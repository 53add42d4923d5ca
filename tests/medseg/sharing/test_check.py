"""check-bundle: every _target_, $ expression, _requires_ and import is listed; outsiders are flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg import cli
from medseg.sharing.check import analyse_expression, analyse_target, check_bundle

SAFE = [
    "import torch",
    "import numpy as np",
    "@bundle_root + '/models/model.pt'",
    "torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "monai.handlers.from_engine(['pred', 'label'])",
    "[x * 2 for x in @values]",
    "lambda x: x.float()",
    "@evaluator.run()",
    "torch.load(@ckpt, weights_only=True)",
]
UNSAFE = {
    "import os": "outside",
    "__import__('os').system('id')": "__import__",
    "eval('1')": "eval",
    "exec('x=1')": "exec",
    "open('/etc/passwd').read()": "open",
    "os.path.join(@a, 'b')": "'os'",
    "subprocess.run(['ls'])": "subprocess",
    "sys.exit(1)": "'sys'",
    "().__class__.__bases__[0].__subclasses__()": "dunder",
    "monai.utils.optional_import('os')[0]": "arbitrary code",
    "torch.hub.load('x/y', 'm')": "arbitrary code",
    "torch.load(@ckpt, weights_only=False)": "weights_only",
    "getattr(torch, 'load')": "getattr",
    "from . import evil": "relative import",
}


@pytest.mark.parametrize("expression", SAFE)
def test_safe_expressions_pass(expression):
    assert analyse_expression(expression, {"np": "numpy"})[0] == []


@pytest.mark.parametrize("expression, reason", UNSAFE.items())
def test_unsafe_expressions_are_flagged(expression, reason):
    reasons = analyse_expression(expression)[0]
    assert reasons and any(reason in r for r in reasons), reasons


@pytest.mark.parametrize(
    "target, ok",
    [
        ("UNet", True),
        ("monai.networks.nets.UNet", True),
        ("eval", False),
        ("os.system", False),
        ("monai.utils.run_cmd", False),
        ("builtins.exec", False),
    ],
)
def test_targets(target, ok):
    assert (analyse_target(target, {}) == []) is ok


def test_clean_bundle_passes_and_lists_everything(rgb_bundle, schema):
    report = check_bundle(rgb_bundle, schema=schema)
    assert report.passed, report.format()
    kinds = {f.kind for f in report.findings}
    assert {"_target_", "expression", "imports"} <= kinds
    assert [m.file for m in report.model_files] == ["models/model.pt"] and report.model_files[0].ok
    assert "UNet" in report.format()


def _edit_inference(bundle, change):
    path = bundle / "configs" / "inference.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c: c["handlers"].append({"_target_": "os.system", "command": "id"}), "os.system"),
        (lambda c: c["imports"].append("$import subprocess"), "subprocess"),
        (lambda c: c.update(initialize=["$__import__('shutil').rmtree('/')"]), "__import__"),
        (lambda c: c["network_def"].update(_requires_="$print(open('/etc/passwd').read())"), "open"),
        (lambda c: c.update(extra="%/etc/other.json#x"), "/etc/other.json"),
        (lambda c: c["network_def"].update(_mode_="debug"), "pdb"),
    ],
)
def test_outside_code_is_listed_as_information_for_trust(bundle_copy, schema, change, expected):
    _edit_inference(bundle_copy, change)
    report = check_bundle(bundle_copy, schema=schema)
    assert any(expected in f.text or expected in f.reason for f in report.configs_flagged), report.format()
    # MONAI configs are code whatever a list says: they never decide what predict runs (the manifest does)
    assert report.passed and not report.has_manifest
    assert "information for those who would --trust" in report.format() and "no manifest.json" in report.format()


def test_tampered_model_is_detected(bundle_copy, schema):
    model = bundle_copy / "models" / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    report = check_bundle(bundle_copy, schema=schema)
    assert not report.passed and "was changed" in "\n".join(report.problems())


def test_missing_model_and_unrecorded_model(bundle_copy, schema):
    (bundle_copy / "models" / "model.pt").unlink()
    (bundle_copy / "models" / "model.ts").write_bytes(b"x")
    problems = "\n".join(check_bundle(bundle_copy, schema=schema).problems())
    assert "models/model.pt: missing" in problems and "models/model.ts: no sha256 recorded" in problems


def test_metadata_against_schema(bundle_copy, schema):
    path = bundle_copy / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    del meta["network_data_format"]
    path.write_text(json.dumps(meta))
    report = check_bundle(bundle_copy, schema=schema)
    assert not report.passed and "network_data_format" in report.metadata_error


def test_logging_conf_and_python_files_are_flagged(bundle_copy, schema):
    (bundle_copy / "configs" / "logging.conf").write_text(
        "[handlers]\nkeys=h\n[handler_h]\nclass=StreamHandler\nargs=(sys.stdout,)\n"
        "[handler_x]\nclass=StreamHandler\nargs=(__import__('os').system('id'),)\n"
    )
    (bundle_copy / "scripts").mkdir()
    (bundle_copy / "scripts" / "evil.py").write_text("import os\n")
    report = check_bundle(bundle_copy, schema=schema)
    flagged = {(f.kind, f.location) for f in report.flagged}
    assert ("logging", "handler_x::args") in flagged and ("python", "") in flagged
    assert ("logging", "handler_h::args") not in flagged


def test_command_exit_status(bundle_copy, schema, monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "check-bundle", ("medseg.commands.check_bundle", "check"))
    assert cli.main(["check-bundle", str(bundle_copy), "--schema", str(schema)]) == 0
    assert "PASSED" in capsys.readouterr().out
    _edit_inference(bundle_copy, lambda c: c["handlers"].append({"_target_": "os.system"}))
    (bundle_copy / "models" / "model.pt").write_bytes(b"changed")
    assert cli.main(["check-bundle", str(bundle_copy), "--schema", str(schema), "--quiet"]) == 2
    out = capsys.readouterr().out
    assert "outside" in out and "os.system" in out and "FAILED" in out and "was changed" in out


@pytest.mark.parametrize("name", ["cardiac_unet", "cardiac_dynunet", "isic_unet", "ham10000_flexunet_resnet34"])
def test_repository_bundles_pass_the_checks_that_apply(name):
    from pathlib import Path

    bundle = Path(__file__).resolve().parents[3] / "bundles" / name
    report = check_bundle(bundle)
    assert report.passed, report.problems()
    assert not report.has_manifest and "MONAI bundle only: no manifest" in report.format()


def test_check_reads_each_file_once(rgb_package, monkeypatch):
    """metadata.json's model hashes and the manifest's cover the same weights files: each is hashed once."""
    from medseg.sharing import check as check_module

    hashed = []
    real = check_module.sha256_file
    monkeypatch.setattr(check_module, "sha256_file", lambda path: hashed.append(Path(path)) or real(path))
    report = check_bundle(rgb_package)
    names = {p.name for p in hashed}
    assert {"model.pt", "model.safetensors"} <= names and "manifest.json" not in names
    assert len(hashed) == len(set(hashed)), "a file was hashed twice"
    assert report.passed
