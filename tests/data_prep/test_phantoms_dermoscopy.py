"""The dermoscopy phantoms (ISIC 2017, HAM10000) read back with PIL and csv, in the real layouts, deterministic."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.__main__ import main

ISIC_SPLITS = {"ISIC-2017_Training": 14, "ISIC-2017_Validation": 3, "ISIC-2017_Test_v2": 3}
HAM_COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
DX = {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def isic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "isic"
    assert main(["phantom", "isic", "--out", str(out), "--n", "20", "--seed", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def ham(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "ham"
    assert main(["phantom", "ham10000", "--out", str(out), "--n", "30", "--seed", "5"]) == 0
    return out


def _check_pair(image_path: Path, mask_path: Path) -> np.ndarray:
    image, mask = Image.open(image_path), Image.open(mask_path)
    assert image.format == "JPEG" and image.mode == "RGB"
    assert mask.format == "PNG" and mask.mode == "L"
    assert image.size == mask.size and 96 <= min(image.size) and max(image.size) <= 160
    values = np.asarray(mask)
    assert set(np.unique(values).tolist()) == {0, 255}
    return values


def test_isic_phantom_has_the_isic_2017_layout(isic):
    assert sorted(p.name for p in isic.iterdir()) == sorted(
        [f"{s}_Data" for s in ISIC_SPLITS] + [f"{s}_Part1_GroundTruth" for s in ISIC_SPLITS]
    )
    sizes = set()
    for split, count in ISIC_SPLITS.items():
        data, truth = isic / f"{split}_Data", isic / f"{split}_Part1_GroundTruth"
        images = sorted(p for p in data.glob("ISIC_*.jpg"))
        assert len(images) == count
        assert len(list(data.glob("ISIC_*_superpixels.png"))) == count  # as in the real download
        assert (data / f"{split}_Data_metadata.csv").read_text().startswith("image_id,")
        assert len(list(truth.iterdir())) == count
        for image in images:
            assert image.stem.startswith("ISIC_") and len(image.stem) == len("ISIC_0000000")
            _check_pair(image, truth / f"{image.stem}_segmentation.png")
            sizes.add(Image.open(image).size)
    assert len(sizes) > 5 and any(w != h for w, h in sizes)  # varied sizes, some not square


def test_isic_lesions_are_darker_but_not_separable_by_one_threshold(isic):
    """Learnable (lesions differ from skin) but not trivial (no global grey threshold gives the masks)."""
    greys, truths = [], []
    for image in sorted((isic / "ISIC-2017_Training_Data").glob("ISIC_???????.jpg")):
        greys.append(np.asarray(Image.open(image).convert("L"), np.float32).ravel())
        mask = isic / "ISIC-2017_Training_Part1_GroundTruth" / f"{image.stem}_segmentation.png"
        truths.append(np.asarray(Image.open(mask)).ravel() > 0)
    grey, truth = np.concatenate(greys), np.concatenate(truths)
    assert grey[truth].mean() < grey[~truth].mean() - 20
    best = max(2 * np.sum((grey < t) & truth) / (np.sum(grey < t) + truth.sum()) for t in range(20, 240, 5))
    assert 0.3 < best < 0.9


def test_ham_phantom_has_the_ham10000_layout_and_metadata(ham):
    assert sorted(p.name for p in ham.iterdir()) == [
        "HAM10000_images", "HAM10000_metadata.csv", "HAM10000_segmentations_lesion_tschandl"]
    with open(ham / "HAM10000_metadata.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == HAM_COLUMNS
    assert len(rows) == 30 and len({r["image_id"] for r in rows}) == 30
    dx = Counter(r["dx"] for r in rows)
    assert set(dx) == DX  # every class when n >= 14
    assert dx.most_common(1)[0][0] == "nv"  # imbalanced like the real set
    per_lesion = Counter(r["lesion_id"] for r in rows)
    assert max(per_lesion.values()) > 1 and set(per_lesion.values()) <= {1, 2, 3}
    for lesion in per_lesion:  # one lesion, one diagnosis
        assert len({r["dx"] for r in rows if r["lesion_id"] == lesion}) == 1
    assert {r["image_id"] for r in rows} == {p.stem for p in (ham / "HAM10000_images").iterdir()}
    for r in rows:
        assert r["lesion_id"].startswith("HAM_") and r["image_id"].startswith("ISIC_00")
        _check_pair(ham / "HAM10000_images" / f"{r['image_id']}.jpg",
                    ham / "HAM10000_segmentations_lesion_tschandl" / f"{r['image_id']}_segmentation.png")


def test_ham_classes_look_different(ham):
    """The mean lesion colour differs between classes more than within them, so a 7-class segmentation is learnable."""
    with open(ham / "HAM10000_metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    colours: dict[str, list] = {}
    for r in rows:
        image = np.asarray(Image.open(ham / "HAM10000_images" / f"{r['image_id']}.jpg"), np.float32)
        mask_dir = ham / "HAM10000_segmentations_lesion_tschandl"
        mask = np.asarray(Image.open(mask_dir / f"{r['image_id']}_segmentation.png"))
        colours.setdefault(r["dx"], []).append(image[mask > 0].mean(axis=0))
    means = {dx: np.mean(c, axis=0) for dx, c in colours.items()}
    spread = np.mean([np.linalg.norm(c - means[dx]) for dx, cs in colours.items() for c in cs])
    gaps = [np.linalg.norm(means[a] - means[b]) for a in means for b in means if a < b]
    assert np.median(gaps) > 1.5 * spread


@pytest.mark.parametrize("kind,n", [("isic", 20), ("ham10000", 30)])
def test_phantom_is_deterministic_for_a_seed(isic, ham, tmp_path, kind, n):
    reference = isic if kind == "isic" else ham
    assert main(["phantom", kind, "--out", str(tmp_path / "again"), "--n", str(n), "--seed", "5"]) == 0
    assert _files(tmp_path / "again") == _files(reference)
    assert main(["phantom", kind, "--out", str(tmp_path / "other"), "--n", str(n), "--seed", "6"]) == 0
    other = _files(tmp_path / "other")
    assert other.keys() != _files(reference).keys() or other != _files(reference)


def test_small_ham_phantoms_keep_every_class_from_14(tmp_path):
    assert main(["phantom", "ham10000", "--out", str(tmp_path / "h"), "--n", "14"]) == 0
    with open(tmp_path / "h" / "HAM10000_metadata.csv", newline="") as f:
        assert {r["dx"] for r in csv.DictReader(f)} == DX


@pytest.mark.parametrize("kind", ["isic", "ham10000"])
def test_phantom_refuses_a_non_empty_folder(tmp_path, capsys, kind):
    (tmp_path / "keep.txt").write_text("not mine")
    assert main(["phantom", kind, "--out", str(tmp_path), "--n", "3"]) != 0
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "not empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
