"""OnnxRuntimeNetwork: the export matches PyTorch, is cached and checked, and PyTorch runs whenever it does not pay."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from monai.networks.nets import UNet  # noqa: E402

from medseg.runtime import onnx_backend  # noqa: E402
from medseg.runtime.onnx_backend import OnnxRuntimeNetwork  # noqa: E402


def tiny_unet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return UNet(spatial_dims=2, in_channels=3, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=1).eval()


def images(batch: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def fast_onnx(monkeypatch):
    """Times read as ONNX Runtime twice as fast as PyTorch: on a loaded 2-core machine a real timing can go either
    way, and these tests are about what follows from the timing, not about the timing."""
    clock = iter([0.2, 0.1] * 100)
    monkeypatch.setattr(onnx_backend, "_timed", lambda call: (call(), next(clock)))


def test_onnx_runtime_matches_torch_on_any_batch_and_size_and_the_export_is_cached(tmp_path, fast_onnx):
    network = tiny_unet()
    wrapped = OnnxRuntimeNetwork(network, "weights-a", cache_dir=tmp_path)
    with torch.no_grad():
        first = wrapped(images(2, 32, 40))
        assert wrapped.backend == "onnxruntime", wrapped.choice
        assert "2.00x PyTorch's speed" in wrapped.choice
        torch.testing.assert_close(first, network(images(2, 32, 40)))  # the first batch is PyTorch's own
        for batch, height, width in ((1, 32, 40), (3, 48, 24), (5, 16, 16)):  # one export serves every shape
            x = images(batch, height, width, seed=batch)
            out = wrapped(x)
            assert out.shape == (batch, 2, height, width)
            torch.testing.assert_close(out, network(x), rtol=1e-4, atol=1e-5)
    cached = list(tmp_path.glob("*.onnx"))
    assert len(cached) == 1 and not list(tmp_path.glob("*.partial"))

    def no_export(*_):
        raise AssertionError("exported again although the cache holds the export")

    again = OnnxRuntimeNetwork(network, "weights-a", cache_dir=tmp_path)
    again._export = no_export
    with torch.no_grad():
        torch.testing.assert_close(again(images(1, 32, 32)), network(images(1, 32, 32)))
        out = again(images(2, 16, 24))
    assert again.backend == "onnxruntime"
    torch.testing.assert_close(out, network(images(2, 16, 24)), rtol=1e-4, atol=1e-5)


def test_a_cached_export_of_other_weights_is_caught_removed_and_torch_runs(tmp_path, fast_onnx):
    """The cache is found by the caller's key; a file under that key that computes something else (changed on
    disk, or a stale key) must never give the masks: the first batch's check catches it."""
    with torch.no_grad():
        OnnxRuntimeNetwork(tiny_unet(seed=5), "weights-a", cache_dir=tmp_path)(images(2, 32, 32))
        (cached,) = tmp_path.glob("*.onnx")
        network = tiny_unet(seed=0)
        wrapped = OnnxRuntimeNetwork(network, "weights-a", cache_dir=tmp_path)
        out = wrapped(images(2, 32, 32))
        assert wrapped.backend == "torch" and "differs from PyTorch" in wrapped.choice
        assert not cached.exists()
        torch.testing.assert_close(out, network(images(2, 32, 32)))
        torch.testing.assert_close(wrapped(images(1, 16, 16)), network(images(1, 16, 16)))


def test_a_truncated_cache_file_is_exported_again(tmp_path, fast_onnx):
    with torch.no_grad():
        network = tiny_unet()
        OnnxRuntimeNetwork(network, "k", cache_dir=tmp_path)(images(2, 32, 32))
        (cached,) = tmp_path.glob("*.onnx")
        cached.write_bytes(cached.read_bytes()[:1000])
        wrapped = OnnxRuntimeNetwork(network, "k", cache_dir=tmp_path)
        wrapped(images(2, 32, 32))
    assert wrapped.backend == "onnxruntime", wrapped.choice
    assert cached.stat().st_size > 1000


class DataDependent(torch.nn.Module):
    """A network the exporter cannot trace: its control flow depends on the input's values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(x) if x.mean() > 0.5 else -self.conv(x)


def test_a_network_that_cannot_be_exported_runs_in_torch(tmp_path, fast_onnx):
    network = DataDependent().eval()
    wrapped = OnnxRuntimeNetwork(network, "k", cache_dir=tmp_path, require=True)
    with torch.no_grad():
        out = wrapped(images(2, 8, 8))
        assert wrapped.backend == "torch" and "could not be exported" in wrapped.choice
        torch.testing.assert_close(out, network(images(2, 8, 8)))
        torch.testing.assert_close(wrapped(images(1, 8, 8)), network(images(1, 8, 8)))
    assert not list(tmp_path.iterdir())


def test_torch_keeps_the_network_where_onnx_runtime_is_slower_unless_required(tmp_path, monkeypatch):
    clock = iter([0.1, 0.3] * 10)  # PyTorch's batch 0.1 s, ONNX Runtime's 0.3 s
    monkeypatch.setattr(onnx_backend, "_timed", lambda call: (call(), next(clock)))
    with torch.no_grad():
        auto = OnnxRuntimeNetwork(tiny_unet(), "k", cache_dir=tmp_path)
        auto(images(2, 16, 16))
        required = OnnxRuntimeNetwork(tiny_unet(), "k", cache_dir=tmp_path, require=True)
        required(images(2, 16, 16))
    assert auto.backend == "torch" and "not faster (0.33x" in auto.choice
    assert required.backend == "onnxruntime"


def test_an_unwritable_cache_costs_only_the_cache(tmp_path, fast_onnx):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would go")
    network = tiny_unet()
    wrapped = OnnxRuntimeNetwork(network, "k", cache_dir=blocker / "onnx")
    with torch.no_grad():
        wrapped(images(2, 16, 16))
        out = wrapped(images(1, 24, 16))
    assert wrapped.backend == "onnxruntime"
    torch.testing.assert_close(out, network(images(1, 24, 16)), rtol=1e-4, atol=1e-5)
    assert blocker.read_text() == "a file where the cache folder would go"


def test_the_reference_is_fp32_under_a_callers_autocast(tmp_path, fast_onnx):
    """medseg predict runs networks under bf16 autocast where the CPU has it; the check compares fp32 with fp32."""
    network = tiny_unet()
    wrapped = OnnxRuntimeNetwork(network, "k", cache_dir=tmp_path, require=True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = wrapped(images(2, 16, 16))
    assert wrapped.backend == "onnxruntime", wrapped.choice
    assert out.dtype == torch.float32


class FailingSession:
    """An ONNX Runtime session that fails as a real one can (out of memory, a kernel error)."""

    def get_inputs(self):
        return [type("Input", (), {"name": "image"})()]

    def run(self, *_):
        raise RuntimeError("onnxruntime: bad allocation")


def test_onnx_runtime_failing_later_hands_that_batch_and_the_rest_to_torch(tmp_path, fast_onnx):
    network = tiny_unet()
    wrapped = OnnxRuntimeNetwork(network, "k", cache_dir=tmp_path)
    with torch.no_grad():
        wrapped(images(2, 16, 16))
        assert wrapped.backend == "onnxruntime"
        wrapped._session = FailingSession()
        for x in (images(2, 16, 16), images(1, 24, 24)):  # a checked shape, then a new one
            torch.testing.assert_close(wrapped(x), network(x))
    assert wrapped.backend == "torch"
    assert wrapped.choice == "torch: ONNX Runtime failed (RuntimeError: onnxruntime: bad allocation)"
