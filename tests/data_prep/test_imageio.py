"""Faithful reading: 16-bit and palette images, masks in any bit depth, file names, non-finite voxels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.__main__ import main
from data_prep.errors import DataPrepError
from data_prep.imageio import list_files, load_image, read_grey, read_mask, read_nifti, read_rgb
from data_prep.isic import read_lesion_mask


def _save16(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array.astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    return path


def test_16_bit_grey_is_scaled_by_its_range_not_clipped(tmp_path):
    ramp = np.linspace(1000, 40000, 64 * 64).reshape(64, 64)
    grey = read_grey(_save16(ramp, tmp_path / "g.png"))
    assert grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255
    assert len(np.unique(grey)) > 200  # the ramp survives; clipping would give one value
    assert np.all(np.diff(grey.ravel().astype(int)) >= 0)
    small = np.arange(64 * 4).reshape(16, 16) % 200  # 8-bit data in a 16-bit file: kept as it is
    assert np.array_equal(read_grey(_save16(small, tmp_path / "s.png")), small)
    rgb = read_rgb(tmp_path / "g.png")
    assert rgb.mode == "RGB" and np.array_equal(np.asarray(rgb)[..., 1], grey)


def test_palette_images_go_through_their_palette_and_label_maps_keep_indices(tmp_path):
    grey = np.array([[0, 60], [120, 250]], dtype=np.uint8)
    pal = Image.fromarray(np.array([[0, 1], [2, 3]], dtype=np.uint8), mode="P")
    pal.putpalette([v for g in (0, 60, 120, 250) for v in (g, g, g)])
    pal.save(tmp_path / "grey_palette.png")
    assert np.array_equal(read_grey(tmp_path / "grey_palette.png"), grey)  # not the indices 0..3
    assert np.array_equal(read_mask(tmp_path / "grey_palette.png"), grey)
    colour = Image.fromarray(np.array([[0, 1], [2, 3]], dtype=np.uint8), mode="P")
    colour.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0])  # a VOC-style class-index PNG
    colour.save(tmp_path / "classes.png")
    assert np.array_equal(read_mask(tmp_path / "classes.png"), [[0, 1], [2, 3]])


@pytest.mark.parametrize("depth", ["1", "8", "16"])
def test_binary_masks_in_any_bit_depth_are_lesion_masks(tmp_path, depth):
    lesion = np.zeros((32, 32), dtype=bool)
    lesion[8:20, 10:24] = True
    path = tmp_path / f"m{depth}.png"
    if depth == "1":
        Image.fromarray(lesion).convert("1").save(path)
    elif depth == "8":
        Image.fromarray(lesion.astype(np.uint8) * 255).save(path)
    else:
        _save16(lesion.astype(np.uint16) * 65535, path)
    assert np.array_equal(read_lesion_mask(path), lesion.astype(np.uint8))


def test_file_listing_ignores_hidden_files_and_matches_extensions_case_insensitively(tmp_path):
    for name in ("a.png", "B.PNG", "c.Png", "._a.png", ".DS_Store", "Thumbs.db", "d.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_files(tmp_path, (".png",))] == ["B.PNG", "a.png", "c.Png"]


def test_nifti_with_nan_is_refused_naming_the_file(tmp_path):
    import nibabel as nib

    data = np.ones((4, 4, 2), dtype=np.float32)
    data[1, 2, 1] = np.nan
    path = tmp_path / "vol.nii.gz"
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    with pytest.raises(DataPrepError, match=r"vol.nii.gz: holds 1 non-finite values"):
        read_nifti(path)
    with pytest.raises(DataPrepError, match="non-finite"):
        load_image(path)


def test_load_image_gives_channel_first_arrays(tmp_path):
    Image.fromarray(np.full((5, 7, 3), 9, dtype=np.uint8)).save(tmp_path / "rgb.png")
    _save16(np.array([[0, 3], [2, 1]]), tmp_path / "labels.png")
    assert load_image(tmp_path / "rgb.png").shape == (3, 5, 7)
    labels = load_image(tmp_path / "labels.png", role="label")
    assert labels.shape == (1, 2, 2) and labels.dtype == np.int64 and labels.max() == 3


@pytest.fixture(scope="module")
def png_raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("png") / "raw"
    assert main(["phantom", "cardiac-png", "--out", str(root), "--n", "12"]) == 0
    return root


def test_cardiac_png_reads_16_bit_upper_case_and_ignores_clutter(png_raw, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(png_raw, src)
    image_dir = src / "train" / "image"
    original = np.asarray(Image.open(image_dir / "cmr1.png")).astype(np.uint16)
    _save16(original * 200 + 7, image_dir / "cmr1.png")  # a 16-bit export of the same slice
    (image_dir / "cmr2.png").rename(image_dir / "cmr2.PNG")
    (src / "train" / "mask" / "cmr2_mask.png").rename(src / "train" / "mask" / "cmr2_MASK.png")
    (image_dir / "._cmr3.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (image_dir / ".DS_Store").write_bytes(b"Bud1")
    out = tmp_path / "out"
    assert main(["cardiac-png", "--src", str(src), "--out", str(out)]) == 0
    datalist = json.loads((out / "datalist.json").read_text())
    items = {i["case_id"]: i for s in ("training", "validation", "testing") for i in datalist[s]}
    n_images = sum(len(list_files(folder, (".png",))) for folder in src.glob("*/image"))
    assert "cmr2" in items and "._cmr3" not in items and len(items) == n_images == 12
    written = np.asarray(Image.open(out / items["cmr1"]["image"]))
    assert written.dtype == np.uint8 and len(np.unique(written)) > 10
    lo, hi = original.min(), original.max()  # scaled by its range: the 8-bit slice's contrast comes back
    assert np.abs(written.astype(int) - np.round((original - lo) * 255.0 / (hi - lo))).max() <= 1


def test_orphan_mask_is_a_bad_case(png_raw, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(png_raw, src)
    (src / "train" / "image" / "cmr4.png").unlink()
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["cardiac-png", "--src", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cmr4_mask.png: mask has no image cmr4.png" in err and not out.exists()
    assert main(["cardiac-png", "--src", str(src), "--out", str(out), "--skip-bad"]) == 0
    bad = json.loads((out / "bad_cases.json").read_text())
    assert [b["file"] for b in bad] == ["train/mask/cmr4_mask.png"]


def test_isic_accepts_a_16_bit_binary_mask_and_a_palette_image(tmp_path, capsys):
    raw = tmp_path / "raw"
    assert main(["phantom", "isic", "--out", str(raw), "--n", "6"]) == 0
    mask = sorted(raw.glob("ISIC-2017_Training_Part1_GroundTruth/*_segmentation.png"))[0]
    lesion = np.asarray(Image.open(mask)) > 127
    _save16(lesion.astype(np.uint16) * 65535, mask)
    image = raw / "ISIC-2017_Training_Data" / mask.name.replace("_segmentation.png", ".jpg")
    rgb = Image.open(image).convert("RGB")
    palette_image = rgb.quantize(64)
    image.unlink()
    palette_image.save(image.with_suffix(".PNG"))
    out = tmp_path / "out"
    assert main(["isic", "--src", str(raw), "--out", str(out)]) == 0, capsys.readouterr().err
    datalist = json.loads((out / "datalist.json").read_text())
    item = next(i for s in ("training", "validation", "testing") for i in datalist[s] if i["case_id"] == image.stem)
    assert np.array_equal(np.asarray(Image.open(out / item["label"])), lesion.astype(np.uint8))
    written = np.asarray(Image.open(out / item["image"]).convert("RGB")).astype(int)
    assert np.abs(written - np.asarray(palette_image.convert("RGB")).astype(int)).max() == 0  # colours, not indices
