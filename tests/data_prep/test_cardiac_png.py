"""The cardiac PNG slice converter on its phantom and on the real sample; bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.__main__ import main

SPLITS = ("training", "validation", "testing")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _all_items(out: Path) -> tuple[dict, list[dict]]:
    datalist = json.loads((out / "datalist.json").read_text())
    return datalist, [item for split in SPLITS for item in datalist[split]]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cardiac_png") / "raw"
    assert main(["phantom", "cardiac-png", "--out", str(root), "--n", "20", "--seed", "2"]) == 0
    return root


def test_official_splits_labels_and_reproducibility(raw, tmp_path):
    from monai.data import load_decathlon_datalist

    out = tmp_path / "out"
    assert main(["cardiac-png", "--src", str(raw), "--out", str(out)]) == 0
    datalist, items = _all_items(out)
    folders = {"training": "train", "validation": "val", "testing": "test"}
    for split, folder in folders.items():
        expected = sorted(p.stem for p in (raw / folder / "image").glob("*"))
        assert sorted(i["case_id"] for i in datalist[split]) == expected
    assert all("label" not in i for i in datalist["testing"]) and datalist["testing"]
    for item in items:
        assert item["group_id"] == item["case_id"]
        assert (out / item["image"]).read_bytes() == (raw / folders[_split_of(datalist, item)] / "image" /
                                                      f"{item['case_id']}.png").read_bytes()
        if "label" in item:
            mask = np.asarray(Image.open(out / item["label"]))
            source = np.asarray(Image.open(raw / folders[_split_of(datalist, item)] / "mask" /
                                           f"{item['case_id']}_mask.png"))
            assert np.array_equal(mask, source) and set(np.unique(mask).tolist()) <= {0, 1, 2, 3}
    for item in load_decathlon_datalist(str(out / "datalist.json"), True, "validation"):
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
    assert main(["cardiac-png", "--src", str(raw), "--out", str(tmp_path / "again")]) == 0
    assert _files(tmp_path / "again") == _files(out)


def _split_of(datalist: dict, item: dict) -> str:
    return next(s for s in SPLITS if item in datalist[s])


def test_train_only_folder_gets_carved_splits(raw, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(raw / "train", src / "train")
    out = tmp_path / "out"
    ratios = ["--val-ratio", "0.25", "--test-ratio", "0.2"]
    assert main(["cardiac-png", "--src", str(src), "--out", str(out), *ratios]) == 0
    datalist, items = _all_items(out)
    assert len(items) == len(list((src / "train" / "image").glob("*.png")))
    assert datalist["validation"] and datalist["testing"] and all("label" in i for i in items)


def test_real_sample(shared_data, tmp_path):
    src = shared_data / "cardiac_png_sample"
    if not src.is_dir():
        pytest.skip("cardiac_png_sample not present")
    out = tmp_path / "out"
    assert main(["cardiac-png", "--src", str(src), "--out", str(out)]) == 0
    datalist, items = _all_items(out)
    assert len(items) == 100 and all(datalist[s] for s in SPLITS)
    values = set()
    for item in items:
        values |= set(np.unique(np.asarray(Image.open(out / item["label"]))).tolist())
    assert values <= {0, 1, 2, 3} and {1, 2, 3} <= values


def _mask_size(src: Path) -> Path:
    mask = src / "train" / "mask" / "cmr2_mask.png"
    Image.fromarray(np.zeros((64, 96), np.uint8)).save(mask)
    return mask


def _mask_values(src: Path) -> Path:
    mask = src / "train" / "mask" / "cmr2_mask.png"
    data = np.asarray(Image.open(mask)).copy()
    data[0, 0] = 255
    Image.fromarray(data).save(mask)
    return mask


def _mask_missing(src: Path) -> Path:
    mask = src / "train" / "mask" / "cmr2_mask.png"
    mask.unlink()
    return mask


def _corrupt_png(src: Path) -> Path:
    image = src / "train" / "image" / "cmr2.png"
    image.write_bytes(image.read_bytes()[:100])
    return image


def _rgb_image(src: Path) -> Path:
    image = src / "train" / "image" / "cmr2.png"
    grey = np.asarray(Image.open(image))
    Image.fromarray(np.stack([grey, grey // 2, grey], axis=-1)).save(image)
    return image


@pytest.mark.parametrize("breaker", [_mask_size, _mask_values, _mask_missing, _corrupt_png, _rgb_image])
def test_bad_input_is_reported_and_can_be_skipped(raw, tmp_path, capsys, breaker):
    src = tmp_path / "src"
    shutil.copytree(raw, src)
    bad_file = breaker(src)
    out = tmp_path / "out"
    assert main(["cardiac-png", "--src", str(src), "--out", str(out)]) != 0
    assert str(bad_file) in capsys.readouterr().err
    assert not (out / "datalist.json").exists()
    assert main(["cardiac-png", "--src", str(src), "--out", str(out), "--skip-bad"]) == 0
    bad = json.loads((out / "bad_cases.json").read_text())
    assert [(b["case_id"], b["file"]) for b in bad] == [("cmr2", bad_file.relative_to(src).as_posix())]
    _, items = _all_items(out)
    assert "cmr2" not in {i["case_id"] for i in items} and len(items) == 19
