"""``medseg evaluate`` end to end on phantom masks (PNG and NIfTI), bad input, and the real ISIC sample masks."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from medseg.cli import main

CARDIAC_LABELS = {"0": "background", "1": "rv", "2": "myocardium", "3": "lv"}


def _blob(shape, rng, value=1):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = rng.integers(shape[0] // 4, 3 * shape[0] // 4, 2)
    ry, rx = rng.integers(5, shape[0] // 4, 2)
    return np.where(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1, value, 0)


def _perturb(mask, rng):
    """A plausible prediction: the mask shifted by a few pixels, with a little salt noise."""
    shifted = np.roll(mask, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
    noise = rng.random(mask.shape) < 0.002
    return np.where(noise, 1, shifted)


def _save_png(array, path):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _save_nifti(array, path, spacing=(1.5, 1.5)):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(array, np.uint8), np.diag([spacing[0], spacing[1], 1.0, 1.0])), str(path))


@pytest.fixture
def isic_like(tmp_path):
    """Ground truth as 0/255 PNG named <id>_segmentation.png, predictions 0/1 <id>_pred.png, images <id>.png."""
    rng = np.random.default_rng(0)
    gt_dir, pred_dir, image_dir = tmp_path / "gt", tmp_path / "pred", tmp_path / "images"
    for d in (gt_dir, pred_dir, image_dir):
        d.mkdir()
    for i in range(6):
        gt = _blob((64, 64), rng)
        pred = _perturb(gt, rng) if i else np.zeros_like(gt)  # case 0: an all-background prediction
        _save_png(gt * 255, gt_dir / f"ISIC_{i:07d}_segmentation.png")
        _save_png(pred, pred_dir / f"ISIC_{i:07d}_pred.png")
        _save_png(rng.integers(0, 255, (64, 64, 3)), image_dir / f"ISIC_{i:07d}.png")
    return tmp_path


def _run(*args) -> int:
    return main(["evaluate", *map(str, args)])


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _column_mean(rows, column):
    values = [float(r[column]) for r in rows if r[column] != ""]
    return float(np.mean(values)) if values else None


def _check_summary_matches_csv(report):
    summary = json.loads((report / "summary.json").read_text())
    rows = _read_csv(report / "per_case.csv")
    assert len(rows) == summary["n_cases"]
    for metric, column in summary["columns"].items():
        expected = _column_mean(rows, column)
        if expected is None:
            assert summary["metrics"][metric] is None
        else:
            assert summary["metrics"][metric] == pytest.approx(expected, rel=1e-7), metric
    return summary, rows


def test_report_from_png_folders(isic_like, tmp_path):
    report = tmp_path / "report"
    rc = _run(
        "--pred",
        isic_like / "pred",
        "--gt",
        isic_like / "gt",
        "--labels",
        "0=background,1=lesion",
        "--images",
        isic_like / "images",
        "--out",
        report,
        "--examples",
        "2",
    )
    assert rc == 0
    for name in (
        "per_case.csv",
        "summary.json",
        "report.html",
        "report.md",
        "figures/class_frequency.png",
        "figures/score_histograms.png",
        "figures/best_1.png",
        "figures/worst_2.png",
    ):
        assert (report / name).is_file(), name
    summary, rows = _check_summary_matches_csv(report)
    assert summary["complete"] and summary["distance_unit"] is None  # binary lesion: no HD95 unless asked
    by_id = {r["case_id"]: r for r in rows}
    assert float(by_id["ISIC_0000000"]["dice_lesion"]) == 0.0  # the all-background prediction
    assert float(by_id["ISIC_0000000"]["pixsim"]) == pytest.approx(float(by_id["ISIC_0000000"]["pixsim_black"]))
    assert summary["metrics"]["thresholded_jaccard"] <= summary["metrics"]["jaccard_mean"]
    assert summary["examples"][-1]["case_id"] == "ISIC_0000000" or any(
        e["case_id"] == "ISIC_0000000" and e["kind"] == "worst" for e in summary["examples"]
    )
    html = (report / "report.html").read_text()
    assert "figures/worst_1.png" in html and "lesion" in html and "thresholded_jaccard" in html
    assert not list(tmp_path.glob(".report.staging*"))


def test_report_from_datalist_with_nifti_spacing_and_annotated(tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    (data / "labels").mkdir(parents=True)
    (data / "images").mkdir()
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    items = []
    for i in range(4):
        gt = np.maximum(_blob((48, 48), rng, 3), 0)
        ring = (_blob((48, 48), rng, 1) > 0) & (gt == 0)
        gt[ring] = 2
        gt[:6, :6] = 1
        pred = _perturb(gt > 0, rng) * gt.max()  # crude: everything predicted as lv
        pred = np.where(pred > 0, gt.clip(1), 0)
        _save_nifti(gt, data / "labels" / f"p{i}.nii.gz", spacing=(1.25, 1.25))
        _save_nifti(pred, pred_dir / f"p{i}_seg.nii.gz", spacing=(1.25, 1.25))
        _save_png(rng.integers(0, 255, (48, 48)), data / "images" / f"p{i}.png")
        item = {
            "image": f"images/p{i}.png",
            "label": f"labels/p{i}.nii.gz",
            "case_id": f"p{i}",
            "group_id": f"p{i}",
            "fold": -1,
            "spacing": [1.25, 1.25],
        }
        if i == 0:
            item["annotated"] = [1, 3]  # myocardium not drawn for this case
        items.append(item)
    datalist = {"name": "phantom", "labels": CARDIAC_LABELS, "training": [], "validation": items, "testing": []}
    (data / "datalist.json").write_text(json.dumps(datalist))
    report = tmp_path / "report"
    assert _run("--pred", pred_dir, "--gt", data / "datalist.json", "--out", report) == 0
    summary, rows = _check_summary_matches_csv(report)
    assert summary["distance_unit"] == "mm"  # cardiac labels: HD95 computed, in mm from the spacing
    assert set(summary["per_class"]) == {"background", "rv", "myocardium", "lv"}
    assert rows[0]["case_id"] == "p0" and rows[0]["dice_myocardium"] == "" and rows[0]["hd95_myocardium"] == ""
    assert rows[1]["dice_myocardium"] != ""
    assert summary["per_class"]["myocardium"]["n_cases_scored"] <= 3


def _bad_input(isic_like, case):
    """Alter the phantom folders to make one kind of bad input; returns the text the error must contain."""
    pred = isic_like / "pred"
    if case == "wrong_size":
        _save_png(np.zeros((32, 64)), pred / "ISIC_0000003_pred.png")
        return "ISIC_0000003"
    if case == "missing":
        (pred / "ISIC_0000002_pred.png").unlink()
        return "ISIC_0000002"
    if case == "bad_values":
        _save_png(np.full((64, 64), 7), pred / "ISIC_0000004_pred.png")
        return "ISIC_0000004"
    if case == "duplicate":
        _save_png(np.zeros((64, 64)), pred / "ISIC_0000001.png")
        return "ISIC_0000001"
    if case == "empty":
        for path in pred.iterdir():
            path.unlink()
        return "no prediction files"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["wrong_size", "missing", "bad_values", "duplicate", "empty"])
def test_bad_input_names_the_case_and_leaves_no_report(isic_like, tmp_path, capsys, case):
    expected = _bad_input(isic_like, case)
    report = tmp_path / "report"
    rc = _run(
        "--pred", isic_like / "pred", "--gt", isic_like / "gt", "--labels", "0=background,1=lesion", "--out", report
    )
    assert rc == 2
    assert expected in capsys.readouterr().err
    assert not report.exists() and not list(tmp_path.glob(".report*"))


def test_allow_missing_scores_the_rest_and_lists_the_missing(isic_like, tmp_path):
    (isic_like / "pred" / "ISIC_0000002_pred.png").unlink()
    report = tmp_path / "report"
    rc = _run(
        "--pred",
        isic_like / "pred",
        "--gt",
        isic_like / "gt",
        "--labels",
        "0=background,1=lesion",
        "--out",
        report,
        "--allow-missing",
    )
    assert rc == 0
    summary, rows = _check_summary_matches_csv(report)
    assert not summary["complete"] and summary["missing_cases"] == ["ISIC_0000002"]
    assert len(rows) == 5 and "INCOMPLETE" in (report / "report.md").read_text()


def test_other_user_errors(isic_like, tmp_path, capsys):
    args = ["--pred", isic_like / "pred", "--gt", isic_like / "gt", "--out", tmp_path / "r"]
    assert _run(*args) == 2
    assert "needs --labels" in capsys.readouterr().err
    assert _run(*args, "--labels", "0=bg,2=lesion") == 2
    assert "0..C-1" in capsys.readouterr().err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    assert _run(*args[:4], "--out", occupied, "--labels", "0=background,1=lesion") == 2
    assert "not empty" in capsys.readouterr().err and (occupied / "notes.txt").is_file()
    # a second run replaces a previous report
    assert _run(*args, "--labels", "0=background,1=lesion") == 0
    assert _run(*args, "--labels", "0=background,1=lesion", "--merge", "all=lesion") == 0
    assert "iou_all" in json.loads((tmp_path / "r" / "summary.json").read_text())["metrics"]


def test_real_isic_masks_score_lower_with_more_erosion(shared_data, tmp_path):
    from scipy.ndimage import binary_erosion

    masks = sorted((shared_data / "isic2017_sample" / "masks").glob("*_segmentation.png"))[:12]
    if not masks:
        pytest.skip("no ISIC sample masks")
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    small = {}
    for path in masks:
        with Image.open(path) as img:
            img.thumbnail((256, 256), Image.Resampling.NEAREST)
            small[path.name] = np.asarray(img)
        _save_png(small[path.name], gt_dir / path.name)  # still 0/255, as the challenge ships them
    summaries = []
    for erosion in (1, 4, 10):
        pred_dir = tmp_path / f"pred_{erosion}"
        pred_dir.mkdir()
        for name, gt in small.items():
            _save_png(binary_erosion(gt > 127, iterations=erosion) * 255, pred_dir / name.replace("_segmentation", ""))
        report = tmp_path / f"report_{erosion}"
        assert (
            _run(
                "--pred",
                pred_dir,
                "--gt",
                gt_dir,
                "--labels",
                "0=background,1=lesion",
                "--out",
                report,
                "--examples",
                "1",
            )
            == 0
        )
        summary, _ = _check_summary_matches_csv(report)
        summaries.append(summary["metrics"])
    jaccards = [s["jaccard_mean"] for s in summaries]
    assert jaccards[0] > jaccards[1] > jaccards[2]
    assert all(s["thresholded_jaccard"] <= s["jaccard_mean"] + 1e-12 for s in summaries)
    assert summaries[0]["PixSim"] > summaries[0]["PixSim_black"]
    assert not math.isnan(summaries[2]["mean_dice"])


def test_mask_reading_errors_and_case_ids(tmp_path):
    import nibabel as nib

    from medseg.io import MaskError, case_id_from_name, read_mask
    from medseg.io.masks import PRED_SUFFIXES

    assert case_id_from_name("ISIC_0001769_segmentation.png") == "ISIC_0001769"
    assert case_id_from_name("cmr12_mask.png") == "cmr12"
    assert case_id_from_name("p01_frame01_pred.nii.gz", PRED_SUFFIXES) == "p01_frame01"
    assert case_id_from_name("notes.txt") is None
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 200
    _save_png(colour, tmp_path / "colour.png")
    with pytest.raises(MaskError, match="colour.png: colour image"):
        read_mask(tmp_path / "colour.png")
    nib.save(nib.Nifti1Image(np.full((8, 8), 0.4, np.float32), np.eye(4)), str(tmp_path / "prob.nii.gz"))
    with pytest.raises(MaskError, match="prob.nii.gz: mask holds non-integer values"):
        read_mask(tmp_path / "prob.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), np.eye(4)), str(tmp_path / "vol.nii.gz"))
    with pytest.raises(MaskError, match="vol.nii.gz: mask has shape"):
        read_mask(tmp_path / "vol.nii.gz")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="broken.png: cannot be read"):
        read_mask(tmp_path / "broken.png")


def test_a_failure_while_writing_leaves_the_previous_report(isic_like, tmp_path, monkeypatch):
    from medseg.reports import figures

    report = tmp_path / "report"
    args = [
        "--pred",
        isic_like / "pred",
        "--gt",
        isic_like / "gt",
        "--labels",
        "0=background,1=lesion",
        "--out",
        report,
    ]
    assert _run(*args) == 0
    before = (report / "summary.json").read_text()

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(figures, "score_histograms", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _run(*args, "--merge", "all=lesion")
    assert (report / "summary.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
