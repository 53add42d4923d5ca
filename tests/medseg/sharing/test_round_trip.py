"""The issue's round trip: train a tiny model (an MLflow run with its dataset input), package it, sign it, and
predict with the signature required on a PNG, a NIfTI volume and a DICOM series; read the DICOM SEG back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medseg.sharing.package import package
from medseg.sharing.predict import predict
from medseg.sharing.signing import new_keys
from tests.medseg.sharing.bundle_factory import make_bundle

LABELS = {"0": "background", "1": "blob"}


def _disc(size: tuple[int, int], rng) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a noisy dark background, and its mask."""
    h, w = size
    cy, cx, r = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w, rng.uniform(0.2, 0.3) * min(h, w)
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(np.uint8)
    image = 0.2 * rng.random((h, w)) + 0.7 * mask
    return image.astype(np.float32), mask


def _train(bundle: Path, steps: int = 40) -> dict:
    """Train the bundle's network on 32x32 discs (what its preprocessing gives) and return the state dict."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    network = UNet(**{k: v for k, v in config["network_def"].items() if k != "_target_"})
    optimiser = torch.optim.Adam(network.parameters(), 1e-2)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    pairs = [_disc((32, 32), rng) for _ in range(64)]
    images = torch.stack([torch.from_numpy((i - i.min()) / (i.max() - i.min()))[None] for i, _ in pairs])
    masks = torch.stack([torch.from_numpy(m)[None].float() for _, m in pairs])
    network.train()
    for step in range(steps):
        batch = slice((step * 16) % 64, (step * 16) % 64 + 16)
        optimiser.zero_grad()
        value = loss(network(images[batch]), masks[batch])
        value.backward()
        optimiser.step()
    return network.state_dict()


def _log_run(uri: str, checkpoint: Path, artifacts: Path) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("round_trip", artifact_location=artifacts.as_uri())
    run_id = client.create_run(experiment, run_name="discs-train").info.run_id
    images = np.zeros((64, 1, 32, 32), np.float32)
    dataset = mlflow.data.from_numpy(images, name="disc phantoms", source=str(artifacts.parent / "discs"))
    client.log_inputs(run_id, [mlflow.entities.DatasetInput(dataset._to_mlflow_entity())])
    client.log_metric(run_id, "val_mean_dice", 0.9, step=1)
    client.log_metric(run_id, "best_val_mean_dice", 0.9)
    client.log_artifact(run_id, str(checkpoint), "checkpoints")
    client.set_terminated(run_id)
    return run_id


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.logical_and(a, b).sum()) / max(1.0, float(a.sum() + b.sum()))


@pytest.mark.slow
def test_train_package_sign_predict_png_nifti_dicom(tmp_path):
    import highdicom as hd
    import pydicom

    from data_prep.__main__ import main as data_prep_main

    bundle = make_bundle(tmp_path / "src", in_channels=1, labels=LABELS)
    checkpoint = tmp_path / "model_key_metric=0.9.pt"
    torch.save({"model": _train(bundle)}, checkpoint)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = _log_run(uri, checkpoint, tmp_path / "artifacts")
    keys = new_keys(tmp_path / "keys")
    result = package(
        bundle,
        run_id,
        tmp_path / "dist",
        schema=bundle / "configs" / "meta_schema.json",
        tracking_uri=uri,
        sign=keys.private,
        tta={"flips": [[0], [1]]},
        postprocessing={"classes": {"1": {"largest_component": True, "fill_holes": True}}},
    )
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["network"]["name"] == "monai.UNet" and manifest["training"]["mlflow_run_id"] == run_id
    assert (result.folder / "manifest.sig").is_file()
    card = (result.folder / "docs" / "README.md").read_text()
    assert "## Intended use" in card and "disc phantoms" in card and "## Data licence" in card
    assert "class 1: largest component, fill holes (given by the packager)" in card

    # inputs: a PNG and a NIfTI volume of discs (other sizes than training), and a phantom DICOM series
    rng = np.random.default_rng(7)
    inputs = tmp_path / "in"
    inputs.mkdir()
    image, png_truth = _disc((45, 60), rng)
    Image.fromarray((image * 255).astype(np.uint8)).save(inputs / "disc.png")
    slices = [_disc((40, 40), rng) for _ in range(3)]
    volume = np.stack([s[0] for s in slices], -1)
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 5.0, 1.0])), inputs / "discs.nii.gz")
    assert data_prep_main(["phantom", "sunnybrook", "--out", str(tmp_path / "sb"), "--n", "1"]) in (0, None)
    series = next((tmp_path / "sb" / "dicoms").iterdir())
    shutil.copytree(series, inputs / "series")

    out = tmp_path / "out"
    predict(result.zip, inputs, out, require_signed=True, trusted_keys=tmp_path / "keys")
    png = np.asarray(Image.open(out / "disc_mask.png")) > 0
    assert png.shape == png_truth.shape and _dice(png, png_truth) > 0.8
    nifti = nib.load(out / "discs_mask.nii.gz")
    assert np.allclose(nifti.affine, np.diag([0.8, 0.8, 5.0, 1.0]))
    for k, (_, truth) in enumerate(slices):
        assert _dice(np.asarray(nifti.dataobj)[..., k] > 0, truth > 0) > 0.8

    # the DICOM SEGs (the phantom is a cine series: 3 phases at 4 positions, one SEG per phase), read back with
    # highdicom and pydicom, referencing the source images
    sources = sorted((pydicom.dcmread(p) for p in series.glob("*.dcm")), key=lambda d: int(d.InstanceNumber))
    nifti_mask = np.asarray(nib.load(out / "series_mask.nii.gz").dataobj)  # (column, row, instance)
    segs = sorted(out.glob("series_seg_part*.dcm"))
    assert len(segs) == 3
    referenced, foreground = set(), 0
    for path in segs:
        seg = hd.seg.segread(path)
        raw = pydicom.dcmread(path)
        assert raw.Modality == "SEG" and raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["blob"]
        algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == manifest["name"] and algorithm.AlgorithmVersion == manifest["version"]
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
        referenced |= {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
        assert seg.StudyInstanceUID == sources[0].StudyInstanceUID and seg.PatientID == sources[0].PatientID
        assert seg.PatientSex == "" and "PatientSex" not in sources[0]  # required, absent in the source: empty
        assert "InstitutionName" not in raw and raw.Manufacturer == "medseg"
        foreground += int((seg.get_pixels_by_source_instance(
            [r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence],
            combine_segments=True,
        ) > 0).sum())  # fmt: skip
    assert referenced == {d.SOPInstanceUID for d in sources}
    assert foreground == int((nifti_mask > 0).sum())
