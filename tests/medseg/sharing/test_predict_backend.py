"""medseg predict --backend: ONNX Runtime gives PyTorch's masks; a backend that cannot run says so in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg import cli
from medseg.runtime import onnx_backend
from medseg.sharing import runtime
from medseg.sharing.errors import SharingError
from medseg.sharing.predict import predict
from tests.medseg.sharing.conftest import make_package, write_rgb_images

SIZES = ((40, 50), (40, 50), (37, 61), (40, 50))


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_mask.png"))}


def test_onnx_runtime_gives_the_masks_of_torch_and_says_so(rgb_package, schema, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    inputs = tmp_path / "in"
    write_rgb_images(inputs, sizes=SIZES, seed=4)
    torch_run = predict(rgb_package, inputs, tmp_path / "torch", schema=schema, backend="torch", batch_size=1)
    assert torch_run.runtime == ["backend: torch (--backend torch)"]

    served = []  # the batches whose logits ONNX Runtime gave, not the checks of a new shape against PyTorch
    run, check = onnx_backend.OnnxRuntimeNetwork._run, onnx_backend.OnnxRuntimeNetwork._check
    monkeypatch.setattr(onnx_backend.OnnxRuntimeNetwork, "_run", lambda self, x: served.append(x.shape) or run(self, x))
    monkeypatch.setattr(onnx_backend.OnnxRuntimeNetwork, "_check", lambda self, x: (check(self, x), served.pop())[0])
    monkeypatch.setitem(cli.COMMANDS, "predict", ("medseg.commands.predict", "predict"))
    args = ["predict", "--bundle", str(rgb_package), "--input", str(inputs), "--schema", str(schema), "--device", "cpu"]
    assert cli.main([*args, "--output", str(tmp_path / "onnx"), "--backend", "onnxruntime", "--batch_size", "1"]) == 0
    out = capsys.readouterr().out
    assert "runtime: backend: onnxruntime (--backend onnxruntime)" in out
    assert "runtime: network: onnxruntime (" in out  # required: kept whatever the first batch's timing said
    # the package resizes every image to 32x32: img0 is checked against PyTorch, and ONNX Runtime gives the masks of
    # the other three
    assert served == [(1, 3, 32, 32)] * (len(SIZES) - 1)

    expected, got = _masks(tmp_path / "torch"), _masks(tmp_path / "onnx")
    assert sorted(got) == sorted(expected) and len(got) == len(SIZES)
    for name in expected:
        # the same softmax within 1e-4: a pixel could only flip where the two classes tie to that precision
        assert (got[name] == expected[name]).mean() > 0.999, name
    assert len(list((tmp_path / "home" / "cache" / "onnx").glob("*.onnx"))) == 1  # exported once, kept for next time


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))


def test_auto_without_the_packages_runs_torch_and_names_the_install(rgb_package, schema, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_backend, "missing_onnx_packages", lambda: ["onnxruntime"])
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    write_rgb_images(tmp_path / "in", sizes=SIZES[:1])
    result = predict(rgb_package, tmp_path / "in", tmp_path / "out", schema=schema, backend="auto")
    hint = "backend: torch fp32 (ONNX Runtime can be faster on this CPU: pip install 'medseg[onnx]')"
    assert result.runtime == [hint]
    assert len(_masks(tmp_path / "out")) == 1


@pytest.mark.parametrize(
    ("backend", "device", "bf16"),
    [("auto", "cpu", False), ("auto", "cpu", True), ("auto", "cuda", False), ("torch", "cpu", False),
     ("onnxruntime", "cpu", True)],
)  # fmt: skip
def test_which_backend_runs(backend, device, bf16, monkeypatch):
    monkeypatch.setattr(onnx_backend, "missing_onnx_packages", lambda: [])
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: bf16)
    choice = runtime.choose_backend(backend, device, amp=True)
    assert choice.onnxruntime == (backend == "onnxruntime" or (backend == "auto" and device == "cpu" and not bf16))
    assert choice.require == (backend == "onnxruntime")
    if backend == "auto" and bf16:
        assert choice.reason == "torch: bf16 autocast on this CPU is faster than ONNX Runtime's fp32"
    if backend == "auto" and device == "cpu" and bf16:  # the manifest's amp off: fp32, so ONNX Runtime may pay
        assert runtime.choose_backend(backend, device, amp=False).onnxruntime


BAD = [
    ({"backend": "onnxruntime", "trust": True}, "--backend onnxruntime: runs the package's manifest model, and "
     "--trust its configs; drop --trust, or use --backend torch"),
    ({"backend": "onnxruntime", "device": "cuda"}, "--backend onnxruntime: runs on the CPU, not cuda; "
     "add --device cpu"),
    ({"backend": "onnxruntime", "missing": True}, "--backend onnxruntime: needs onnxruntime, not installed here; "
     "pip install 'medseg[onnx]'"),
    ({"env": "fastest"}, "MEDSEG_BACKEND: 'fastest' is not one of auto, torch, onnxruntime; "
     "use auto, torch or onnxruntime"),
]  # fmt: skip


@pytest.mark.parametrize(("settings", "message"), BAD, ids=["trust", "cuda", "not_installed", "bad_env"])
def test_a_backend_that_cannot_run_is_one_line_and_nothing_is_written(
    settings, message, rgb_package, schema, tmp_path, monkeypatch, capsys
):
    if settings.get("missing"):
        monkeypatch.setattr(onnx_backend, "missing_onnx_packages", lambda: ["onnxruntime"])
    if "env" in settings:
        monkeypatch.setenv("MEDSEG_BACKEND", settings["env"])
    inputs = tmp_path / "in"
    write_rgb_images(inputs, sizes=SIZES[:1])
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setitem(cli.COMMANDS, "predict", ("medseg.commands.predict", "predict"))
    args = ["predict", "--bundle", str(rgb_package), "--input", str(inputs), "--output", str(tmp_path / "out"),
            "--schema", str(schema), "--device", settings.get("device", "cpu")]  # fmt: skip
    args += ["--backend", settings["backend"]] if "backend" in settings else []
    args += ["--trust"] if settings.get("trust") else []
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err == f"medseg predict: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output folder, no staging folder
    with pytest.raises(SharingError):
        predict(rgb_package, inputs, tmp_path / "out", schema=schema, device=settings.get("device", "cpu"),
                trust=bool(settings.get("trust")), backend=settings.get("backend"))  # fmt: skip


def test_packaging_checks_torch_networks_whatever_the_default_backend(rgb_bundle, tmp_path, monkeypatch):
    """``medseg package`` loads the manifest model to check it against the checkpoint's network, state dict by state
    dict: ``$MEDSEG_BACKEND`` (predict's default) must not hand it ONNX Runtime wrappers."""
    monkeypatch.setenv("MEDSEG_BACKEND", "auto")
    monkeypatch.setattr(onnx_backend, "missing_onnx_packages", lambda: [])
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.choose_backend(None, "cpu", amp=True).onnxruntime  # what predict would run here
    folder = make_package(tmp_path / "dist", rgb_bundle)
    assert (folder / "manifest.json").is_file()
