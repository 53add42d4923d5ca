"""The MONAI metrics and ignite handlers inside a tiny SupervisedEvaluator (1-layer network, 2 batches)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.data import DataLoader  # noqa: E402
from monai.engines import SupervisedEvaluator  # noqa: E402
from monai.handlers import from_engine  # noqa: E402
from monai.transforms import AsDiscreted, Compose  # noqa: E402

from medseg.handlers.metrics import (  # noqa: E402
    ClassDice,
    ClassHausdorff95,
    ClassIoU,
    ClassLevelJaccard,
    LesionCoverage,
    MergedIoU,
    PixelAccuracy,
    ThresholdedJaccard,
)
from medseg.handlers.report import SegmentationReport  # noqa: E402
from medseg.metrics import ClassDiceMetric, ThresholdedJaccardMetric, score_label_maps  # noqa: E402

LABELS = {"0": "background", "1": "rv", "2": "lv"}


def _cases(n=4, size=24):
    rng = np.random.default_rng(3)
    cases = []
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        label = np.zeros((size, size), np.int64)
        cy, cx = rng.integers(7, size - 7, 2)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 < 20] = 2
        label[(yy - cy) ** 2 + (xx - cx + 4) ** 2 < 8] = 1
        image = label.astype(np.float32) + rng.normal(0, 0.25, label.shape).astype(np.float32)
        cases.append({"image": torch.as_tensor(image)[None], "label": torch.as_tensor(label)[None], "case_id": f"c{i}"})
    return cases


def _evaluator(key_val_metric, additional_metrics, val_handlers):
    torch.manual_seed(0)
    network = torch.nn.Conv2d(1, 3, 1)
    with torch.no_grad():  # a fixed, imperfect "model": thresholds the intensity at 0.5 and 1.5
        network.weight[:] = torch.tensor([[[[-4.0]]], [[[0.0]]], [[[4.0]]]])
        network.bias[:] = torch.tensor([2.0, 0.0, -6.0])
    post = Compose([AsDiscreted(keys="pred", argmax=True, to_onehot=3), AsDiscreted(keys="label", to_onehot=3)])
    return SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(_cases(), batch_size=2),
        network=network,
        postprocessing=post,
        key_val_metric=key_val_metric,
        additional_metrics=additional_metrics,
        val_handlers=val_handlers,
    )


def test_handlers_log_per_class_values_and_report_is_written(tmp_path):
    pair = from_engine(["pred", "label"])
    report = SegmentationReport(tmp_path / "report", LABELS, n_examples=1)
    evaluator = _evaluator(
        {"val_dice": ClassDice(labels=LABELS, output_transform=pair)},
        {
            "val_iou": ClassIoU(labels=LABELS, output_transform=pair),
            "val_hd95": ClassHausdorff95(labels=LABELS, spacing=1.25, output_transform=pair),
            "val_thresholded_jaccard": ThresholdedJaccard(output_transform=pair),
            "val_jaccard": ThresholdedJaccard(thresholded=False, output_transform=pair),
            "val_pixsim": PixelAccuracy(output_transform=pair),
            "val_pixsim_black": PixelAccuracy(baseline=True, output_transform=pair),
            "val_n_90": PixelAccuracy(min_accuracy=0.9, output_transform=pair),
            "val_n_lesion_90": LesionCoverage(0.9, output_transform=pair),
            "val_class_jaccard": ClassLevelJaccard(output_transform=pair),
            "val_iou_merged": MergedIoU({"heart": [1, 2]}, output_transform=pair),
        },
        [report],
    )
    evaluator.run()
    metrics = evaluator.state.metrics
    for key in (
        "val_dice",
        "val_dice_rv",
        "val_dice_lv",
        "val_iou_rv",
        "val_iou_lv",
        "val_hd95_lv",
        "val_thresholded_jaccard",
        "val_pixsim",
        "val_pixsim_black",
        "val_n_90",
        "val_n_lesion_90",
        "val_class_jaccard",
        "val_iou_merged_heart",
    ):
        assert isinstance(metrics[key], float), key
    assert metrics["val_dice"] == pytest.approx((metrics["val_dice_rv"] + metrics["val_dice_lv"]) / 2)
    assert metrics["val_pixsim"] > metrics["val_pixsim_black"]  # the model beats all-background
    assert metrics["val_thresholded_jaccard"] <= metrics["val_jaccard"]

    # the handlers agree with the numpy scores of the same label maps, collected by the report handler
    assert report.case_ids == ["c0", "c1", "c2", "c3"]
    scores = score_label_maps(report.case_ids, report.preds, report.labels, list(LABELS.values()))
    table = scores.summary()["per_class"]
    summary = scores.summary()["metrics"]
    assert metrics["val_dice_lv"] == pytest.approx(table["lv"]["dice"], rel=1e-5)
    assert metrics["val_iou_rv"] == pytest.approx(table["rv"]["iou"], rel=1e-5)
    assert metrics["val_pixsim"] == pytest.approx(summary["PixSim"], rel=1e-5)
    assert metrics["val_jaccard"] == pytest.approx(summary["jaccard_mean"], rel=1e-5)
    assert metrics["val_n_lesion_90"] == pytest.approx(summary["N_lesion_90"], rel=1e-5)

    out = tmp_path / "report"
    for name in ("per_case.csv", "summary.json", "report.html", "report.md", "figures/best_1.png"):
        assert (out / name).is_file(), name
    written = json.loads((out / "summary.json").read_text())
    assert written["n_cases"] == 4 and written["distance_unit"] == "px"  # cardiac names: HD95 computed
    assert written["metrics"]["mean_dice"] == pytest.approx(summary["mean_dice"])


def test_cumulative_metrics_take_argmaxed_input_and_annotated_masks():
    gt = torch.zeros(2, 1, 6, 6, dtype=torch.long)
    gt[:, 0, :3, :3] = 1
    pred = gt.clone()
    pred[1, 0, 4:, 4:] = 2  # class 2 predicted in case 1, absent from its ground truth
    dice = ClassDiceMetric(num_classes=3, reduction="none")
    values = dice(pred, gt).numpy()
    assert values[0, 0] == 1.0 and math.isnan(values[0, 1]) and values[1, 1] == 0.0
    dice.reset()
    masked = dice(pred, gt, annotated=torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)).numpy()
    assert math.isnan(masked[1, 1])  # not annotated for case 1: left out instead of 0
    jaccard = ThresholdedJaccardMetric(num_classes=3)
    jaccard(pred, gt)
    # case 0 perfect (1.0); case 1: foreground 9 right, 4 false positive -> 9/13 = 0.69 >= 0.65
    assert float(jaccard.aggregate()) == pytest.approx((1 + 9 / 13) / 2)
    with pytest.raises(ValueError, match="num_classes"):
        ThresholdedJaccardMetric()(pred, gt)


def _doc_json_blocks():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()
    return [json.loads(block.split("```", 1)[0]) for block in text.split("```json\n")[1:]]


def test_bundle_config_snippets_in_the_docs_run_in_an_evaluator(tmp_path):
    from monai.bundle import ConfigParser

    blocks = _doc_json_blocks()
    assert len(blocks) >= 3
    parser = ConfigParser({"labels": LABELS, "output_dir": str(tmp_path)})
    for block in blocks:
        for key, value in block.items():
            parser[key] = value
    parser["validate#additional_metrics#val_iou_merged#groups"] = {"heart": [1, 2]}  # the phantom has 3 labels
    evaluator = _evaluator(
        parser.get_parsed_content("validate#key_metric"),
        parser.get_parsed_content("validate#additional_metrics"),
        [parser.get_parsed_content("validate#report")],
    )
    evaluator.run()
    for key in (
        "val_dice",
        "val_dice_lv",
        "val_iou_rv",
        "val_thresholded_jaccard",
        "val_n_lesion_50",
        "val_hd95_rv",
        "val_class_jaccard",
        "val_iou_merged_heart",
    ):
        assert isinstance(evaluator.state.metrics[key], float), key
    assert (tmp_path / "report" / "summary.json").is_file()


def test_handler_passes_an_annotated_mask_from_the_output_transform():
    gt = torch.zeros(2, 1, 6, 6, dtype=torch.long)
    gt[:, 0, :3, :3] = 1
    pred = gt.clone()
    pred[:, 0, 4:, 4:] = 2  # class 2 predicted, never in the ground truth
    handler = ClassDice(labels=["bg", "a", "b"], num_classes=3, save_details=False)
    handler.reset()
    annotated = [torch.tensor([True, True, False]), torch.tensor([True, True, True])]
    handler.update((list(pred), list(gt), annotated))  # decollated items, as an evaluator gives them
    assert handler.compute() == pytest.approx(0.5)  # a: 1.0; b: 0 in case 1 only (left out of case 0)
    handler.reset()
    handler.update((pred, gt, torch.tensor([[True, True, False], [True, True, False]])))
    assert handler.compute() == 1.0 and math.isnan(handler._values[1])


def test_report_takes_spacing_from_the_nifti_geometry_after_resizing(tmp_path):
    """A bundle resizes slices, so HD95 in mm must follow the resized label's affine, not the datalist's spacing."""
    from types import SimpleNamespace

    from monai.data import MetaTensor

    label = np.zeros((1, 16, 16), dtype=np.float32)
    label[0, 4:12, 4:12] = 1
    pred = np.zeros_like(label)
    pred[0, 4:12, 6:14] = 1  # shifted by 2 pixels
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0]))  # 2 mm pixels, as after a 2x down-sampling

    def as_meta(array, name):
        return MetaTensor(torch.as_tensor(array), affine=affine, meta={"filename_or_obj": name})

    outputs = []
    for name in ("a.nii.gz", "b.png"):
        outputs.append({"pred": as_meta(pred, name), "label": as_meta(label, name), "image": as_meta(label, name)})
    batch = [{"case_id": "nifti", "spacing": [1.0, 1.0]}, {"case_id": "png"}]
    report = SegmentationReport(tmp_path / "report", {"0": "background", "1": "lv"}, n_examples=1)
    engine = SimpleNamespace(state=SimpleNamespace(output=outputs, batch=batch))
    report.collect(engine)
    assert report.spacings == [(2.0, 2.0), None]
    report.write(engine)
    rows = {r["case_id"]: r for r in _read_csv(tmp_path / "report" / "per_case.csv")}
    assert float(rows["nifti"]["hd95_lv"]) == pytest.approx(2 * float(rows["png"]["hd95_lv"]))
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["n_cases"] == 2


def _read_csv(path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))
