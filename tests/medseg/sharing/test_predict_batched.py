"""medseg predict in batches: the masks of one image at a time, bad images skipped alone, nothing left half-written.

The reference is the one-image-at-a-time path ``medseg predict`` took before batching: the loaded model's
``segment`` on each image, written with the same ``write_png_mask``. Both packages have random weights; one runs
without TTA, the other with flip + 90-degree TTA (and a per-class post-processing decision), through the manifest
and through the bundle's own configs (``--trust``).
"""

from __future__ import annotations

import csv
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg import cli
from medseg.sharing.inference import load_inference_bundle
from medseg.sharing.inputs import write_png_mask
from medseg.sharing.manifest import read_manifest
from medseg.sharing.predict import predict
from medseg.sharing.shared_model import load_shared_model
from tests.medseg.sharing.bundle_factory import make_bundle
from tests.medseg.sharing.conftest import make_package, write_rgb_images

SIZES = ((40, 50), (37, 61), (33, 29), (64, 48), (31, 31), (45, 52), (36, 40))  # 7 images: batches of 3, 3, 1


@pytest.fixture(scope="module")
def tta_package(tmp_path_factory) -> Path:
    """An RGB package whose bundle infers with FlipTTAInferer (flips and 90-degree turns), as the repository's do,
    with a largest-component + fill-holes decision for the lesion."""
    bundle = make_bundle(tmp_path_factory.mktemp("tta") / "bundle", seed=3)
    path = bundle / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["inferer"] = {
        "_target_": "medseg.inference.FlipTTAInferer",
        "flips": True,
        "rot90": True,
        "log_probabilities": True,
    }
    path.write_text(json.dumps(config, indent=2))
    decision = {"classes": {"1": {"largest_component": True, "fill_holes": True}}}
    return make_package(tmp_path_factory.mktemp("tta_package"), bundle, postprocessing=decision)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_rgb_images(tmp_path_factory.mktemp("batched") / "in", sizes=SIZES, seed=1)


def _one_at_a_time(package: Path, paths: list[Path], out: Path, trust: bool) -> None:
    """The masks of the per-image path: the model's ``segment`` on each image, as predict called it before."""
    model = load_inference_bundle(package) if trust else load_shared_model(package, read_manifest(package))
    out.mkdir()
    for path in paths:
        label_map = model.segment({"image": str(path)}, str(path))
        write_png_mask(label_map, out / f"{path.stem}_mask.png", binary=max(model.labels) == 1)


def _masks(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*_mask.png"))}


@pytest.mark.parametrize("package_name", ["rgb_package", "tta_package"])
@pytest.mark.parametrize("trust", [False, True], ids=["manifest", "trust"])
def test_batched_masks_equal_one_at_a_time(package_name, trust, images, schema, tmp_path, request):
    package = request.getfixturevalue(package_name)
    if package_name == "tta_package":  # the TTA is really on, in both paths
        assert read_manifest(package)["inference"]["tta"] == {"flips": [[0], [1], [0, 1]], "rot90": [1, 2, 3]}
        assert type(load_inference_bundle(package).inferer).__name__ == "FlipTTAInferer"
    _one_at_a_time(package, images, tmp_path / "reference", trust)
    expected = _masks(tmp_path / "reference")
    predict(package, images[0].parent, tmp_path / "batched", schema=schema, trust=trust, batch_size=3)
    predict(package, images[0].parent, tmp_path / "single", schema=schema, trust=trust, batch_size=1)
    assert len(expected) == len(SIZES)
    assert _masks(tmp_path / "batched") == expected  # byte for byte
    assert _masks(tmp_path / "single") == expected
    assert (tmp_path / "batched" / "findings.csv").read_bytes() == (tmp_path / "single" / "findings.csv").read_bytes()
    values = set().union(*(np.unique(np.asarray(Image.open(tmp_path / "batched" / n))) for n in expected))
    assert values == {0, 255}  # not a trivial comparison: the random network finds lesion and background


def test_bad_images_in_a_batch_are_skipped_alone(rgb_package, schema, tmp_path, monkeypatch, capsys):
    inputs = tmp_path / "in"
    good = write_rgb_images(inputs, sizes=SIZES[:4], seed=2)  # img0..img3
    (inputs / "img1_broken.png").write_bytes(b"not a png")  # sorted between img1 and img2: the same batch of 4
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(inputs / "img2_grey.png")
    _one_at_a_time(rgb_package, good, tmp_path / "reference", trust=False)

    monkeypatch.setitem(cli.COMMANDS, "predict", ("medseg.commands.predict", "predict"))
    args = ["predict", "--bundle", str(rgb_package), "--input", str(inputs), "--schema", str(schema)]
    assert cli.main([*args, "--output", str(tmp_path / "out"), "--batch_size", "4", "--device", "cpu"]) == 0
    err = capsys.readouterr().err.splitlines()
    err = err[next(i for i, line in enumerate(err) if line.startswith("skipped")) :]  # after the progress bar
    broken, grey = str(inputs / "img1_broken.png"), str(inputs / "img2_grey.png")
    assert err[0].startswith("skipped 2 input(s)") and len(err) == 3
    assert err[1].startswith(f"  {broken}: cannot be read as an image (UnidentifiedImageError")
    assert err[2] == f"  {grey}: is greyscale (1 channel) but this model expects an RGB image; " + (
        "convert the image to an RGB image"
    )

    out = tmp_path / "out"
    assert _masks(out) == _masks(tmp_path / "reference")  # the other images of the batch are all there
    assert sorted(p.name for p in out.iterdir()) == sorted([*_masks(out), "findings.csv", "skipped.csv"])
    with open(out / "skipped.csv") as f:
        assert [row["input"] for row in csv.DictReader(f)] == [broken, grey]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_a_failing_label_map_or_batch_skips_only_its_images(rgb_package, images, schema, tmp_path, monkeypatch):
    from medseg.sharing.shared_model import SharedModel

    label_map, forward = SharedModel.label_map, SharedModel.forward

    def failing_label_map(self, data):
        if data["image"].meta["filename_or_obj"].endswith("img1.png"):
            raise RuntimeError("post-processing failed")
        return label_map(self, data)

    def failing_forward(self, batch):
        if len(batch) == 1:  # the last batch of 7 images by 3 holds img6 alone
            raise RuntimeError("out of memory")
        return forward(self, batch)

    monkeypatch.setattr(SharedModel, "label_map", failing_label_map)
    monkeypatch.setattr(SharedModel, "forward", failing_forward)
    result = predict(rgb_package, images[0].parent, tmp_path / "out", schema=schema, batch_size=3)
    skipped = dict(result.skipped)
    assert sorted(Path(p).name for p in skipped) == ["img1.png", "img6.png"]
    assert skipped[str(images[1])] == f"{images[1]}: RuntimeError: post-processing failed"
    assert skipped[str(images[6])] == f"{images[6]}: RuntimeError: out of memory"
    assert len(_masks(tmp_path / "out")) == len(SIZES) - 2


def test_an_interrupted_run_leaves_nothing(rgb_package, images, schema, tmp_path, monkeypatch):
    import medseg.sharing.inputs

    written = []

    def interrupt(label_map, path, binary):
        written.append(path)
        if len(written) == 3:
            raise KeyboardInterrupt
        write_png_mask(label_map, path, binary)

    def ours() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("medseg-")}  # the loader and writer threads

    before, at_cleanup = ours(), []
    rmtree = shutil.rmtree

    def cleanup(path, *args, **kwargs):
        at_cleanup.append(ours() - before)
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(medseg.sharing.inputs, "write_png_mask", interrupt)
    monkeypatch.setattr(shutil, "rmtree", cleanup)
    with pytest.raises(KeyboardInterrupt):
        predict(rgb_package, images[0].parent, tmp_path / "out", schema=schema, batch_size=2)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    assert at_cleanup == [set()]  # stopped before the staging folder was removed, so none can write into it


def test_a_model_without_batch_steps_runs_one_image_at_a_time(rgb_package, images, schema, tmp_path, monkeypatch):
    """A stand-in model with only ``segment`` (as tests substitute for the network) still segments images."""
    model = load_shared_model(rgb_package, read_manifest(rgb_package))

    class SegmentOnly:
        labels, metadata = model.labels, model.metadata

        def segment(self, item, source):
            return model.segment(item, source)

    monkeypatch.setattr("medseg.sharing.predict._load", lambda *args, **kwargs: SegmentOnly())
    predict(rgb_package, images[0].parent, tmp_path / "out", schema=schema)
    _one_at_a_time(rgb_package, images, tmp_path / "reference", trust=False)
    assert _masks(tmp_path / "out") == _masks(tmp_path / "reference")


def test_bad_batch_size_is_one_line(rgb_package, images, schema, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "predict", ("medseg.commands.predict", "predict"))
    args = ["predict", "--bundle", str(rgb_package), "--input", str(images[0].parent), "--schema", str(schema)]
    assert cli.main([*args, "--output", str(tmp_path / "out"), "--batch_size", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "medseg predict: --batch_size: must be a whole number of at least 1, got 0"
    assert not (tmp_path / "out").exists()
