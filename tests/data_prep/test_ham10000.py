"""The HAM10000 converter: 7-class lesion masks, lesion grouping, dx stratification and every bad input."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.__main__ import main
from tests.data_prep.test_isic import SPLITS, check_output, convert, read_json, tree

DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
IMAGES, MASKS, CSV = "HAM10000_images", "HAM10000_segmentations_lesion_tschandl", "HAM10000_metadata.csv"
N = 42


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("ham_src") / "raw"
    assert main(["phantom", "ham10000", "--out", str(src), "--n", str(N), "--seed", "2"]) == 0
    return src


@pytest.fixture(scope="module")
def converted(phantom, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ham_out") / "ham"
    assert main(["ham10000", "--src", str(phantom), "--out", str(out)]) == 0
    return out


def rows_of(src: Path) -> list[dict]:
    with open(src / CSV, newline="") as f:
        return list(csv.DictReader(f))


def copy_src(phantom: Path, dst: Path) -> Path:
    shutil.copytree(phantom, dst)
    return dst


# ----------------------------------------------------------------------------------------------------- the phantom


def test_class_masks_carry_the_dx(phantom, converted):
    datalist = check_output(converted, phantom, set(range(8)))
    assert datalist["labels"] == {"0": "background", **{str(i + 1): d for i, d in enumerate(DX)}}
    dx_of = {r["image_id"]: r["dx"] for r in rows_of(phantom)}
    items = [i for s in SPLITS for i in datalist[s]]
    assert sorted(i["case_id"] for i in items) == sorted(dx_of)
    for item in items:
        assert item["class"] == dx_of[item["case_id"]]
        label = np.asarray(Image.open(converted / item["label"]))
        source = np.asarray(Image.open(phantom / MASKS / f"{item['case_id']}_segmentation.png"))
        assert np.array_equal(label, (source > 127) * (DX.index(item["class"]) + 1))


def test_lesions_stay_together_and_training_has_every_dx(phantom, converted):
    datalist = read_json(converted / "datalist.json")
    lesion_of = {r["image_id"]: r["lesion_id"] for r in rows_of(phantom)}
    placement: dict[str, set] = {}
    for split in SPLITS:
        for item in datalist[split]:
            assert item["group_id"] == lesion_of[item["case_id"]]
            placement.setdefault(item["group_id"], set()).add((split, item["fold"]))
    assert all(len(p) == 1 for p in placement.values())  # no lesion in two splits or two folds
    assert any(sum(1 for v in lesion_of.values() if v == g) > 1 for g in placement)  # some lesions have 2+ images
    assert {i["class"] for i in datalist["training"]} == set(DX)
    assert datalist["validation"] and datalist["testing"]
    assert {i["fold"] for i in datalist["training"]} == {0, 1, 2}


def test_stats_count_the_classes(converted):
    stats = read_json(converted / "stats.json")
    training = stats["class_frequency"]["training"]
    assert all(training["items_with_class"][str(i + 1)] > 0 for i in range(7))
    assert max(range(1, 8), key=lambda k: training["items_with_class"][str(k)]) == DX.index("nv") + 1


def test_deterministic_two_workers_and_rerun(phantom, converted, tmp_path, capsys):
    out = tmp_path / "again"
    assert convert(capsys, "ham10000", "--src", phantom, "--out", out, "--workers", "2")[0] == 0
    assert tree(out) == tree(converted)
    assert convert(capsys, "ham10000", "--src", phantom, "--out", out)[0] == 0
    assert tree(out) == tree(converted)


def test_max_size_shrinks(phantom, tmp_path, capsys):
    out = tmp_path / "small"
    assert convert(capsys, "ham10000", "--src", phantom, "--out", out, "--max-size", "48")[0] == 0
    datalist = check_output(out, phantom, set(range(8)))
    assert all(max(Image.open(out / i["image"]).size) == 48 for s in SPLITS for i in datalist[s])


def test_split_image_folders_masks_folder_and_explicit_paths(phantom, tmp_path, capsys):
    """Images over part_1/part_2 and masks named <id>.png in masks/ are found; --metadata/--images/--masks override."""
    src = tmp_path / "raw"
    for part in ("HAM10000_images_part_1", "HAM10000_images_part_2", "masks"):
        (src / part).mkdir(parents=True)
    for k, image in enumerate(sorted((phantom / IMAGES).iterdir())):
        shutil.copy(image, src / f"HAM10000_images_part_{1 + k % 2}")
        shutil.copy(phantom / MASKS / f"{image.stem}_segmentation.png", src / "masks" / f"{image.stem}.png")
    shutil.copy(phantom / CSV, src / CSV)
    assert convert(capsys, "ham10000", "--src", src, "--out", tmp_path / "auto")[0] == 0
    auto = check_output(tmp_path / "auto", src, set(range(8)))
    assert sum(len(auto[s]) for s in SPLITS) == N

    elsewhere = tmp_path / "meta.csv"
    (src / CSV).rename(elsewhere)
    argv = ["ham10000", "--src", src, "--out", tmp_path / "explicit", "--metadata", elsewhere,
            "--images", src / "HAM10000_images_part_1", src / "HAM10000_images_part_2", "--masks", "masks"]
    assert convert(capsys, *argv)[0] == 0
    explicit = read_json(tmp_path / "explicit" / "datalist.json")
    assert [auto[s] for s in SPLITS] == [explicit[s] for s in SPLITS]


# ------------------------------------------------------------------------------------------------------ bad inputs


def _edit_csv(src: Path, edit) -> list[str]:
    lines = (src / CSV).read_text().splitlines()
    lines = edit(lines)
    (src / CSV).write_text("\n".join(lines) + "\n")
    return lines


def _unknown_dx(src):
    _edit_csv(src, lambda lines: [lines[0], lines[1].replace(lines[1].split(",")[2], "scc", 1), *lines[2:]])
    return src / CSV, "line 2: unknown dx 'scc'"


def _row_without_image(src):
    first = rows_of(src)[0]["image_id"]
    (src / IMAGES / f"{first}.jpg").unlink()
    return src / CSV, f"line 2: image {first} not found"


def _image_without_row(src):
    dropped = rows_of(src)[0]["image_id"]
    _edit_csv(src, lambda lines: [lines[0], *lines[2:]])
    return src / IMAGES / f"{dropped}.jpg", "image has no row"


def _image_without_mask(src):
    first = sorted((src / IMAGES).iterdir())[0]
    (src / MASKS / f"{first.stem}_segmentation.png").unlink()
    return first, "image has no mask"


def _truncated_image(src):
    first = sorted((src / IMAGES).iterdir())[0]
    first.write_bytes(first.read_bytes()[:300])
    return first, "cannot be read as an image"


def _mask_of_another_size(src):
    first = sorted((src / MASKS).iterdir())[0]
    Image.open(first).resize((20, 10)).save(first)
    return first, "mask is 10x20"


def _label_map_mask(src):
    first = sorted((src / MASKS).iterdir())[0]
    mask = np.asarray(Image.open(first)).copy()
    mask[: mask.shape[0] // 2] = 1
    mask[-5:] = 2
    Image.fromarray(mask).save(first)
    return first, "away from the lesion's edge"


def _duplicate_image(src):
    first = sorted((src / IMAGES).iterdir())[0]
    (src / "HAM10000_images_part_2").mkdir()
    shutil.copy(first, src / "HAM10000_images_part_2")
    return first, "duplicate case id"


BAD_CASES = {
    "unknown dx": _unknown_dx,
    "CSV row without image": _row_without_image,
    "image without CSV row": _image_without_row,
    "image without mask": _image_without_mask,
    "truncated image": _truncated_image,
    "mask of another size": _mask_of_another_size,
    "label map 0/1/2/255": _label_map_mask,
    "duplicate image id": _duplicate_image,
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_case_fails_naming_the_file_and_skip_bad_lists_it(phantom, tmp_path, capsys, name):
    src = copy_src(phantom, tmp_path / "raw")
    bad_file, problem = BAD_CASES[name](src)
    out = tmp_path / "out"
    code, err = convert(capsys, "ham10000", "--src", src, "--out", out)
    assert code != 0 and problem in err and str(bad_file) in err
    assert not out.exists()

    code, err = convert(capsys, "ham10000", "--src", src, "--out", out, "--skip-bad")
    assert code == 0, err
    bad = read_json(out / "bad_cases.json")
    assert bad and all(problem.split(":")[-1].strip() in b["problem"] or name == "duplicate image id" for b in bad)
    datalist = check_output(out, src, set(range(8)))
    written = {i["case_id"] for s in SPLITS for i in datalist[s]}
    assert len(written) + len({b["case_id"] for b in bad}) == N
    assert {p.stem for p in (out / "labels").iterdir()} == written


MALFORMED_CSV = {
    "missing column": (lambda lines: [lines[0].replace("dx,", "diagnosis,", 1), *lines[1:]],
                       "lacks the column(s) ['dx']"),
    "short row": (lambda lines: [lines[0], "HAM_0000001,ISIC_0099999", *lines[1:]], "line 2: expected 7"),
    "long row": (lambda lines: [lines[0], lines[1] + ",extra", *lines[2:]], "line 2: expected 7"),
    "repeated image": (lambda lines: [*lines, lines[1]], f"line {N + 2}: image_id"),
    "empty file": (lambda lines: [], "header: empty file"),
    "header only": (lambda lines: lines[:1], "has no rows"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_CSV))
def test_malformed_csv_fails_naming_the_csv_even_with_skip_bad(phantom, tmp_path, capsys, name):
    edit, problem = MALFORMED_CSV[name]
    src = copy_src(phantom, tmp_path / "raw")
    _edit_csv(src, edit)
    code, err = convert(capsys, "ham10000", "--src", src, "--out", tmp_path / "out", "--skip-bad")
    assert code != 0 and str(src / CSV) in err and problem in err
    assert not (tmp_path / "out").exists()


def test_binary_csv_is_reported(phantom, tmp_path, capsys):
    src = copy_src(phantom, tmp_path / "raw")
    (src / CSV).write_bytes(bytes(range(256)) * 4)
    code, err = convert(capsys, "ham10000", "--src", src, "--out", tmp_path / "out")
    assert code != 0 and str(src / CSV) in err


@pytest.mark.parametrize("missing", [CSV, IMAGES, MASKS])
def test_missing_part_of_the_layout_lists_the_layout(phantom, tmp_path, capsys, missing):
    src = copy_src(phantom, tmp_path / "raw")
    target = src / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    code, err = convert(capsys, "ham10000", "--src", src, "--out", tmp_path / "out")
    assert code != 0 and str(src) in err
    assert all(name in err for name in (IMAGES, MASKS, CSV))


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    code, err = convert(capsys, "ham10000", "--src", tmp_path / "raw", "--out", tmp_path / "out")
    assert code != 0 and "HAM10000_metadata.csv" in err and not (tmp_path / "out").exists()
