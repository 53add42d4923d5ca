"""Classes a case leaves unannotated (Sunnybrook: RV never, myocardium on some slices) are not scored."""

from __future__ import annotations

import json

import pytest
import torch

from medseg.transforms import AnnotatedMaskd
from tests.bundles.conftest import TINY, run_workflow


def test_annotated_mask_from_a_datalist_list():
    to_mask = AnnotatedMaskd(num_classes=4)
    assert to_mask({"annotated": [3]})["annotated"].tolist() == [True, False, False, True]
    assert to_mask({"annotated": [2, 3]})["annotated"].tolist() == [True, False, True, True]
    assert to_mask({})["annotated"].tolist() == [True] * 4  # no key: every class annotated
    with pytest.raises(ValueError, match="outside 0..3"):
        to_mask({"annotated": [5]})


@pytest.mark.slow
def test_cardiac_evaluation_leaves_unannotated_classes_out(tmp_path):
    from data_prep.__main__ import main as data_prep_main

    raw, data = tmp_path / "raw", tmp_path / "data"
    assert data_prep_main(["phantom", "sunnybrook", "--out", str(raw), "--n", "2", "--seed", "3"]) == 0
    assert data_prep_main(["sunnybrook", "--src", str(raw), "--out", str(data), "--val-ratio", "0.5",
                           "--test-ratio", "0"]) == 0
    validation = json.loads((data / "datalist.json").read_text())["validation"]
    with_myocardium = sum(2 in item.get("annotated", [1, 2, 3]) for item in validation)
    assert 0 < with_myocardium < len(validation), "the phantom should mix slices with and without o-contours"

    models, evals = tmp_path / "models", tmp_path / "eval"
    run_workflow("cardiac_unet", ("train",), dataset_dir=str(data), output_dir=str(models), **TINY)
    seen = []
    workflow = run_workflow(
        "cardiac_unet", ("train", "evaluate"), "infer", dataset_dir=str(data), output_dir=str(evals),
        ckpt_path=str(models / "model.pt"), spatial_size=TINY["spatial_size"], num_workers=0,
    )
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    for output in [evaluator.state.output] if isinstance(evaluator.state.output, dict) else evaluator.state.output:
        seen.append(torch.as_tensor(output["annotated_mask"]).tolist())
    assert all(mask[1] is False for mask in seen), "RV is never annotated in Sunnybrook"

    per_class = json.loads((evals / "report" / "summary.json").read_text())["per_class"]
    assert per_class["right ventricle"]["n_cases_scored"] == 0
    assert per_class["myocardium"]["n_cases_scored"] <= with_myocardium
    assert per_class["left ventricle"]["n_cases_scored"] == len(validation)
