"""The cardiac phantoms (ACDC, PNG slices, Sunnybrook) read back with the real readers, and deterministic."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from data_prep.__main__ import main


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cardiac_phantoms")
    sizes = {"acdc": 5, "cardiac-png": 14, "sunnybrook": 2}
    for kind, n in sizes.items():
        assert main(["phantom", kind, "--out", str(root / kind), "--n", str(n), "--seed", "3"]) == 0
    return {kind: root / kind for kind in sizes}


@pytest.mark.parametrize("kind,n", [("acdc", 5), ("cardiac-png", 14), ("sunnybrook", 2)])
def test_phantom_is_deterministic_for_a_seed(phantoms, tmp_path, kind, n):
    assert main(["phantom", kind, "--out", str(tmp_path / "again"), "--n", str(n), "--seed", "3"]) == 0
    assert _files(tmp_path / "again") == _files(phantoms[kind])
    assert main(["phantom", kind, "--out", str(tmp_path / "other"), "--n", str(n), "--seed", "4"]) == 0
    assert _files(tmp_path / "other") != _files(phantoms[kind])


def test_acdc_phantom_reads_back_with_nibabel_and_itk(phantoms):
    import itk
    import nibabel as nib

    from data_prep.acdc import parse_info

    root = phantoms["acdc"]
    patients = sorted(root.glob("*/patient*"))
    assert [p.parent.name for p in patients] == ["testing"] + ["training"] * 4
    assert patients[0].name == "patient101" and patients[1].name == "patient001"
    spacings = set()
    for folder in patients:
        info = parse_info(folder / "Info.cfg")
        assert info["ED"] == "1" and int(info["NbFrame"]) >= int(info["ES"])
        lv_voxels = {}
        for phase in ("ED", "ES"):
            image = nib.load(folder / f"{folder.name}_frame{int(info[phase]):02d}.nii.gz")
            gt = nib.load(folder / f"{folder.name}_frame{int(info[phase]):02d}_gt.nii.gz")
            assert image.shape[:2] == (64, 64) and 6 <= image.shape[2] <= 8 and gt.shape == image.shape
            assert image.get_data_dtype() in (np.int16, np.uint8) and gt.get_data_dtype() == np.uint8
            labels = np.asanyarray(gt.dataobj)
            assert set(np.unique(labels).tolist()) == {0, 1, 2, 3}
            zooms = image.header.get_zooms()
            assert 1.0 < zooms[0] == zooms[1] < 2.0 and zooms[2] >= 5
            assert np.allclose(gt.header.get_zooms(), zooms)
            lv_voxels[phase] = int((labels == 3).sum())
            spacings.add(float(zooms[0]))
        assert lv_voxels["ES"] < lv_voxels["ED"]
        itk_image = itk.imread(str(folder / f"{folder.name}_frame01.nii.gz"))
        assert np.allclose(tuple(itk_image.GetSpacing()), zooms, atol=1e-4)
    assert len(spacings) > 1  # spacing varies per patient


def test_cardiac_png_phantom_reads_back_with_pil(phantoms):
    from PIL import Image

    root = phantoms["cardiac-png"]
    images = sorted(root.glob("*/image/cmr*.png"))
    assert len(images) == 14 and {p.parts[-3] for p in images} == {"train", "val", "test"}
    assert not (root / "test" / "mask").exists()
    for path in images:
        img = Image.open(path)
        assert img.mode == "L" and img.size == (96, 96)
        if path.parts[-3] != "test":
            mask = np.asarray(Image.open(path.parent.parent / "mask" / f"{path.stem}_mask.png"))
            assert mask.shape == (96, 96) and set(np.unique(mask).tolist()) <= {0, 1, 2, 3}
            assert 3 in mask and 2 in mask  # every slice cuts the left ventricle


def test_sunnybrook_phantom_reads_back_with_pydicom_and_itk(phantoms):
    import itk
    import pydicom
    from pydicom.uid import MRImageStorage

    from data_prep.phantoms.sunnybrook import folder_names, identity

    root = phantoms["sunnybrook"]
    assert (root / "link.csv").read_text().splitlines()[0] == "patient_id,original_id"
    for index in range(2):
        dicom_folder, contour_folder = folder_names(index)
        files = sorted((root / "dicoms" / dicom_folder).glob("*.dcm"))
        datasets = [pydicom.dcmread(p) for p in files]
        for ds in datasets:
            assert ds.file_meta.MediaStorageSOPClassUID == MRImageStorage == ds.SOPClassUID
            for key, value in identity(index, seed=3).items():
                assert str(ds.get(key)) == value
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns) and ds.BitsAllocated in (8, 16)
            assert len(ds.PixelSpacing) == 2 and float(ds.SliceThickness) > 0
        i_numbers = {int(re.search(r"IM-0001-(\d{4})", p.name).group(1))
                     for p in (root / "contourfiles" / contour_folder / "i-contours").glob("*.txt")}
        o_numbers = {int(re.search(r"IM-0001-(\d{4})", p.name).group(1))
                     for p in (root / "contourfiles" / contour_folder / "o-contours").glob("*.txt")}
        assert o_numbers and o_numbers < i_numbers  # o-contours on only some annotated images
        assert i_numbers < {int(p.stem) for p in files}  # and some images without contours
        # the end-diastolic images of the slice stack read as one 3D series with ITK
        series = sorted((root / "dicoms" / dicom_folder / f"{n}.dcm" for n in o_numbers),
                        key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
        volume = itk.imread([str(p) for p in series])
        ds = pydicom.dcmread(series[0])
        assert itk.size(volume)[2] == len(series)
        assert np.allclose(tuple(itk.spacing(volume))[:2], [float(s) for s in ds.PixelSpacing], atol=1e-4)
