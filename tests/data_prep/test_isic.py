"""The ISIC converter: the ISIC 2017 phantom, the other layouts, the real sample and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from data_prep.__main__ import main
from data_prep.imageio import sha256_of

SPLITS = ("training", "validation", "testing")
PHANTOM_SPLITS = {
    "training": "ISIC-2017_Training", "validation": "ISIC-2017_Validation", "testing": "ISIC-2017_Test_v2",
}


def convert(capsys, *argv) -> tuple[int, str]:
    """Run ``python -m data_prep`` in-process; returns the exit code and stderr."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def check_output(out: Path, src: Path, label_values: set[int]) -> dict:
    """Checks every converter output must pass; returns the datalist.

    Paths resolve with MONAI, labels are PNGs of the image's size with allowed values, stats.json counts the pixels
    of the masks written, provenance.json holds the sha256 of the source files.
    """
    from monai.data import load_decathlon_datalist

    datalist = read_json(out / "datalist.json")
    stats = read_json(out / "stats.json")
    for split in SPLITS:
        if not datalist[split]:
            continue
        items = load_decathlon_datalist(out / "datalist.json", is_segmentation=True, data_list_key=split)
        pixels: dict[str, int] = {}
        for item in items:
            image = Image.open(item["image"])
            assert image.mode == "RGB"
            if "label" in item:
                label = Image.open(item["label"])
                assert label.size == image.size and label.mode == "L"
                values, counts = np.unique(np.asarray(label), return_counts=True)
                assert set(values.tolist()) <= label_values
                for v, c in zip(values.tolist(), counts.tolist(), strict=True):
                    pixels[str(v)] = pixels.get(str(v), 0) + c
        recorded = {k: v for k, v in stats["class_frequency"][split]["pixels"].items() if v}
        assert recorded == pixels
        assert stats["counts"][split]["items"] == len(items)
    provenance = read_json(out / "provenance.json")
    cases = sum(len(datalist[s]) for s in SPLITS)
    assert len(provenance["cases"]) == cases
    for case_id, files in provenance["cases"].items():
        for f in files:
            assert f["sha256"] == sha256_of(src / f["path"]), case_id
    return datalist


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("isic_src") / "raw"
    assert main(["phantom", "isic", "--out", str(src), "--n", "20", "--seed", "1"]) == 0
    return src


@pytest.fixture(scope="module")
def converted(phantom, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("isic_out") / "isic"
    assert main(["isic", "--src", str(phantom), "--out", str(out)]) == 0
    return out


def copy_src(phantom: Path, dst: Path) -> Path:
    shutil.copytree(phantom, dst)
    return dst


# ----------------------------------------------------------------------------------------------------- the phantom


def test_official_2017_split_and_binary_labels(phantom, converted):
    datalist = check_output(converted, phantom, {0, 1})
    assert datalist["labels"] == {"0": "background", "1": "lesion"}
    assert datalist["modality"] == {"0": "dermoscopy (RGB)"}
    for split, prefix in PHANTOM_SPLITS.items():
        expected = sorted(p.stem for p in (phantom / f"{prefix}_Data").glob("ISIC_???????.jpg"))
        assert [i["case_id"] for i in datalist[split]] == expected  # official split kept, superpixels ignored
    assert [len(datalist[s]) for s in SPLITS] == [14, 3, 3]
    assert {i["fold"] for i in datalist["training"]} == {0, 1, 2}
    assert {i["fold"] for i in datalist["validation"] + datalist["testing"]} == {-1}


def test_labels_are_the_source_masks_thresholded_and_images_unchanged(phantom, converted):
    datalist = read_json(converted / "datalist.json")
    for split, prefix in PHANTOM_SPLITS.items():
        for item in datalist[split]:
            source = phantom / f"{prefix}_Part1_GroundTruth" / f"{item['case_id']}_segmentation.png"
            expected = (np.asarray(Image.open(source)) > 127).astype(np.uint8)
            assert np.array_equal(np.asarray(Image.open(converted / item["label"])), expected)
            original = phantom / f"{prefix}_Data" / f"{item['case_id']}.jpg"
            assert (converted / item["image"]).read_bytes() == original.read_bytes()


def test_same_seed_gives_byte_identical_output_and_rerun_replaces_it(phantom, converted, tmp_path, capsys):
    out = tmp_path / "again"
    assert convert(capsys, "isic", "--src", phantom, "--out", out)[0] == 0
    first = tree(out)
    assert first == tree(converted)
    assert convert(capsys, "isic", "--src", phantom, "--out", out)[0] == 0  # re-run over an existing output
    assert tree(out) == first
    (out / "images" / "stale.png").write_bytes(b"not written by data_prep")
    code, err = convert(capsys, "isic", "--src", phantom, "--out", out)
    assert code == 2 and "images/stale.png" in err and (out / "images" / "stale.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no staging folder left behind


def test_two_workers_give_the_same_datalist(phantom, converted, tmp_path, capsys):
    assert convert(capsys, "isic", "--src", phantom, "--out", tmp_path / "w2", "--workers", "2")[0] == 0
    assert (tmp_path / "w2" / "datalist.json").read_bytes() == (converted / "datalist.json").read_bytes()


def test_max_size_shrinks_images_and_masks_alike(phantom, tmp_path, capsys):
    out = tmp_path / "small"
    assert convert(capsys, "isic", "--src", phantom, "--out", out, "--max-size", "64")[0] == 0
    datalist = check_output(out, phantom, {0, 1})
    for item in datalist["training"] + datalist["validation"]:
        image = Image.open(out / item["image"])
        assert image.format == "PNG" and max(image.size) == 64
        source = next(phantom.glob(f"*_Data/{item['case_id']}.jpg"))
        w, h = Image.open(source).size
        assert abs(image.size[0] / image.size[1] - w / h) < 0.05
        assert np.asarray(Image.open(out / item["label"])).max() == 1  # the lesion survives the shrinking
    assert read_json(out / "stats.json")["image_size"]["max"] == [64, 64]


# ---------------------------------------------------------------------------------------------- the other layouts


def _rename_2017(phantom: Path, dst: Path, data: dict[str, str], truth: dict[str, str], mask_suffix: str) -> Path:
    """Lay the 2017 phantom out as another ISIC edition: folder names and mask suffix."""
    dst.mkdir()
    for split, prefix in PHANTOM_SPLITS.items():
        if split in data:
            shutil.copytree(phantom / f"{prefix}_Data", dst / data[split])
        if split in truth:
            (dst / truth[split]).mkdir()
            for mask in (phantom / f"{prefix}_Part1_GroundTruth").iterdir():
                shutil.copy(mask, dst / truth[split] / mask.name.replace("_segmentation.png", mask_suffix))
    return dst


def test_isic_2016_layout(phantom, tmp_path, capsys):
    src = _rename_2017(
        phantom, tmp_path / "raw",
        {"training": "ISBI2016_ISIC_Part1_Training_Data", "testing": "ISBI2016_ISIC_Part1_Test_Data"},
        {"training": "ISBI2016_ISIC_Part1_Training_GroundTruth", "testing": "ISBI2016_ISIC_Part1_Test_GroundTruth"},
        "_Segmentation.png",
    )
    assert convert(capsys, "isic", "--src", src, "--out", tmp_path / "out", "--val-ratio", "0.25")[0] == 0
    datalist = check_output(tmp_path / "out", src, {0, 1})
    assert len(datalist["testing"]) == 3  # official
    assert len(datalist["training"]) + len(datalist["validation"]) == 14
    assert len(datalist["validation"]) >= 3  # carved from training: 2016 has no validation split


def test_isic_2018_layout_with_unlabelled_test_folder(phantom, tmp_path, capsys):
    parts = {"training": "Training", "validation": "Validation", "testing": "Test"}
    src = _rename_2017(
        phantom, tmp_path / "raw",
        {s: f"ISIC2018_Task1-2_{p}_Input" for s, p in parts.items()},
        {s: f"ISIC2018_Task1_{p}_GroundTruth" for s, p in parts.items() if s != "testing"},
        "_segmentation.png",
    )
    assert convert(capsys, "isic", "--src", src, "--out", tmp_path / "out")[0] == 0
    datalist = check_output(tmp_path / "out", src, {0, 1})
    assert [len(datalist[s]) for s in SPLITS] == [14, 3, 3]
    assert all("label" not in i for i in datalist["testing"])
    assert all("label" in i for i in datalist["training"] + datalist["validation"])


@pytest.mark.parametrize("mask_name", ["{}_segmentation.png", "{}_Segmentation.png", "{}_mask.png", "{}.png"])
def test_flat_layout_with_each_mask_name(phantom, tmp_path, capsys, mask_name):
    src = tmp_path / "raw"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for image in sorted(phantom.glob("*_Data/ISIC_???????.jpg"))[:10]:
        shutil.copy(image, src / "images")
        mask = next(phantom.glob(f"*_GroundTruth/{image.stem}_segmentation.png"))
        shutil.copy(mask, src / "masks" / mask_name.format(image.stem))
    assert convert(capsys, "isic", "--src", src, "--out", tmp_path / "out")[0] == 0
    datalist = check_output(tmp_path / "out", src, {0, 1})
    assert sum(len(datalist[s]) for s in SPLITS) == 10
    assert datalist["testing"] and datalist["validation"]  # no official split: carved by the ratios


def test_missing_ground_truth_is_an_error_outside_the_test_split(phantom, tmp_path, capsys):
    src = copy_src(phantom, tmp_path / "raw")
    shutil.rmtree(src / "ISIC-2017_Validation_Part1_GroundTruth")
    code, err = convert(capsys, "isic", "--src", src, "--out", tmp_path / "out")
    assert code != 0 and "ISIC-2017_Validation_Part1_GroundTruth" in err and "ground-truth folder not found" in err
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------------------- the real sample


@pytest.mark.realdata
def test_real_isic_2017_sample(shared_data, tmp_path, capsys):
    src = shared_data / "isic2017_sample"
    out = tmp_path / "out"
    assert convert(capsys, "isic", "--src", src, "--out", out, "--max-size", "256", "--workers", "2")[0] == 0
    datalist = check_output(out, src, {0, 1})
    items = [i for s in SPLITS for i in datalist[s]]
    assert len(items) == 75 and all("label" in i for i in items)
    for item in items:
        image, label = Image.open(out / item["image"]), np.asarray(Image.open(out / item["label"]))
        assert max(image.size) <= 256 and label.shape == (image.size[1], image.size[0])
        assert set(np.unique(label).tolist()) == {0, 1}  # every sample image shows a lesion and some skin


# ------------------------------------------------------------------------------------------------------ bad inputs


def _first(src: Path, pattern: str) -> Path:
    return sorted(src.glob(pattern))[0]


def _truncate_jpeg(src: Path) -> Path:
    path = _first(src, "ISIC-2017_Training_Data/ISIC_???????.jpg")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path


def _text_as_jpeg(src: Path) -> Path:
    path = _first(src, "ISIC-2017_Validation_Data/ISIC_???????.jpg")
    path.write_text("this is not an image\n")
    return path


def _mask_of_another_size(src: Path) -> Path:
    path = _first(src, "ISIC-2017_Training_Part1_GroundTruth/*.png")
    Image.open(path).resize((40, 30)).save(path)
    return path


def _image_without_mask(src: Path) -> Path:
    mask = _first(src, "ISIC-2017_Training_Part1_GroundTruth/*.png")
    mask.unlink()
    return src / "ISIC-2017_Training_Data" / mask.name.replace("_segmentation.png", ".jpg")


def _mask_without_image(src: Path) -> Path:
    image = _first(src, "ISIC-2017_Training_Data/ISIC_???????.jpg")
    image.unlink()
    return src / "ISIC-2017_Training_Part1_GroundTruth" / f"{image.stem}_segmentation.png"


def _colour_mask(src: Path) -> Path:
    path = _first(src, "ISIC-2017_Training_Part1_GroundTruth/*.png")
    mask = np.asarray(Image.open(path))
    colour = np.stack([mask, mask // 2, np.zeros_like(mask)], axis=-1)
    Image.fromarray(colour, "RGB").save(path)
    return path


def _label_map_mask(src: Path) -> Path:
    """Values 0/1/2/255 on large areas: a multi-class label map, not a binary mask."""
    path = _first(src, "ISIC-2017_Training_Part1_GroundTruth/*.png")
    mask = np.asarray(Image.open(path)).copy()
    mask[: mask.shape[0] // 3] = 1
    mask[-mask.shape[0] // 3:] = 2
    Image.fromarray(mask).save(path)
    return path


def _duplicate_id(src: Path) -> Path:
    image = _first(src, "ISIC-2017_Training_Data/ISIC_???????.jpg")
    shutil.copy(image, src / "ISIC-2017_Validation_Data")
    mask = src / "ISIC-2017_Training_Part1_GroundTruth" / f"{image.stem}_segmentation.png"
    shutil.copy(mask, src / "ISIC-2017_Validation_Part1_GroundTruth")
    return image


BAD_CASES = {
    "truncated jpeg": (_truncate_jpeg, "cannot be read as an image"),
    "text file named .jpg": (_text_as_jpeg, "cannot be read as an image"),
    "mask of another size": (_mask_of_another_size, "mask is 30x40"),
    "image without mask": (_image_without_mask, "image has no mask"),
    "mask without image": (_mask_without_image, "mask has no image"),
    "colour mask": (_colour_mask, "expected a single-channel image"),
    "label map 0/1/2/255": (_label_map_mask, "away from the lesion's edge"),
    "duplicate case id": (_duplicate_id, "duplicate case id"),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_fails_naming_the_file_and_skip_bad_lists_it(phantom, tmp_path, capsys, name):
    make_bad, problem = BAD_CASES[name]
    src = copy_src(phantom, tmp_path / "raw")
    bad_file = make_bad(src)
    out = tmp_path / "out"
    code, err = convert(capsys, "isic", "--src", src, "--out", out)
    assert code != 0
    assert problem in err
    assert str(bad_file) in err or (name == "duplicate case id" and bad_file.stem in err)
    assert not out.exists()  # nothing half-written

    code, err = convert(capsys, "isic", "--src", src, "--out", out, "--skip-bad")
    assert code == 0, err
    bad = read_json(out / "bad_cases.json")
    assert bad and all(problem in b["problem"] or b["problem"] == "duplicate case id" for b in bad)
    datalist = check_output(out, src, {0, 1})
    written = {i["case_id"] for s in SPLITS for i in datalist[s]}
    assert not written & {b["case_id"] for b in bad}
    assert len(written) + len({b["case_id"] for b in bad}) == 20
    names = {p.stem for p in (out / "images").iterdir()} | {p.stem for p in (out / "labels").iterdir()}
    assert names == written  # a bad case leaves no file behind


def test_grey_edges_and_zero_one_masks_are_binarised(phantom, tmp_path, capsys):
    """Anti-aliased 0..255 masks (grey only on the edge) are thresholded at 127; 0/1 masks are taken as they are."""
    src = copy_src(phantom, tmp_path / "raw")
    masks = sorted((src / "ISIC-2017_Training_Part1_GroundTruth").glob("*.png"))
    original = [np.asarray(Image.open(m)) for m in masks[:2]]
    blurred = Image.fromarray(original[0]).resize((original[0].shape[1] * 4, original[0].shape[0] * 4))
    blurred = blurred.resize((original[0].shape[1], original[0].shape[0]), Image.Resampling.BILINEAR)
    blurred = np.asarray(blurred.filter(ImageFilter.GaussianBlur(1)))
    assert len(np.unique(blurred)) > 10  # really anti-aliased
    Image.fromarray(blurred).save(masks[0])
    Image.fromarray((original[1] > 0).astype(np.uint8)).save(masks[1])
    assert convert(capsys, "isic", "--src", src, "--out", tmp_path / "out")[0] == 0
    labels = tmp_path / "out" / "labels"
    written = [np.asarray(Image.open(labels / f"{m.stem[: len('ISIC_0000000')]}.png")) for m in masks[:2]]
    assert np.array_equal(written[0], (blurred > 127).astype(np.uint8))
    assert np.array_equal(written[1], (original[1] > 0).astype(np.uint8))


@pytest.mark.parametrize("layout", ["empty", "wrong"])
def test_empty_or_wrongly_laid_out_folder_lists_the_layouts(tmp_path, capsys, layout):
    src = tmp_path / "raw"
    src.mkdir()
    if layout == "wrong":
        (src / "pictures").mkdir()
        Image.new("RGB", (8, 8)).save(src / "pictures" / "ISIC_0000001.jpg")
    code, err = convert(capsys, "isic", "--src", src, "--out", tmp_path / "out")
    assert code != 0 and str(src) in err
    for name in ("ISIC 2016", "ISIC 2017", "ISIC 2018", "flat", "ISIC-2017_Training_Data", "images"):
        assert name in err
    assert not (tmp_path / "out").exists()


def test_a_second_mask_for_one_image_is_reported(phantom, tmp_path, capsys):
    src = tmp_path / "raw"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    image = sorted(phantom.glob("ISIC-2017_Training_Data/ISIC_???????.jpg"))[0]
    shutil.copy(image, src / "images")
    mask = phantom / "ISIC-2017_Training_Part1_GroundTruth" / f"{image.stem}_segmentation.png"
    shutil.copy(mask, src / "masks")
    shutil.copy(mask, src / "masks" / f"{image.stem}.png")
    code, err = convert(capsys, "isic", "--src", src, "--out", tmp_path / "out")
    assert code != 0 and f"a second mask for image {image.stem}" in err
    assert str(src / "masks" / f"{image.stem}.png") in err
