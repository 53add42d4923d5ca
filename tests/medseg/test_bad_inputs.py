"""Bad input to the medseg commands: exit status 2, one line naming the culprit, nothing written.

(The bundles' own bad-input suite is ``tests/bundles/test_bad_input.py``; data_prep's is
``tests/data_prep/test_bad_inputs.py``.)
"""

from __future__ import annotations

import json

import pytest

from medseg.cli import main

CARDIAC_TRAIN = "bundles/cardiac_unet/configs/train.json"


def _dataset(tmp_path, datalist_text: str | None):
    folder = tmp_path / "data"
    folder.mkdir()
    if datalist_text is not None:
        (folder / "datalist.json").write_text(datalist_text)
    return folder


CASES = {
    "unknown bundle": (["train", "--bundle", "no_such_bundle", "--dataset_dir", "{data}"], "no_such_bundle", None),
    "zero epochs": (["train", "--bundle", "cardiac_unet", "--dataset_dir", "{data}", "--max_epochs", "0"],
                    "--max_epochs 0: must be a positive whole number", None),
    "mistyped --set": (["train", "--bundle", "cardiac_unet", "--dataset_dir", "{data}", "--set", "max_epoch=1"],
                       "did you mean max_epochs?", None),
    "unknown strategy": (["train", "--bundle", "cardiac_unet", "--dataset_dir", "{data}", "--strategy", "warp"],
                         "unknown strategy 'warp'", None),
    "datalist not JSON": (["train", "--bundle", "cardiac_unet", "--dataset_dir", "{data}", "--max_epochs", "1"],
                          "datalist.json", "{not json"),
    "run: missing config": (["run", "--config_file", "{data}/train.json"], "train.json: no such file", None),
    "run: override without value": (["run", "--config_file", CARDIAC_TRAIN, "--max_epochs"],
                                    "--max_epochs: no value given", None),
    "run: mistyped override": (["run", "--config_file", CARDIAC_TRAIN, "--dataset_dir", "{data}", "--batchsize", "2"],
                               "did you mean batch_size?", None),
    "plan: missing dataset": (["plan", "--bundle", "cardiac_unet", "--dataset_dir", "{data}/none"], "none", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    argv, culprit, datalist = CASES[case]
    data = _dataset(tmp_path, datalist)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path.parent)  # any medseg_work/ would appear here, not in the checkout
    work = tmp_path.parent / "medseg_work"
    had_work = work.exists()
    status = main([a.replace("{data}", str(data)) if "{data}" in a else _repo(a) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(err) == 1 and culprit in err[0] and "Traceback" not in err[0], err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert work.exists() == had_work


def _repo(arg: str) -> str:
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    return str(repo / arg) if arg.startswith("bundles/") else arg


def test_evaluate_empty_section_names_the_datalist(tmp_path, capsys):
    gt = tmp_path / "datalist.json"
    gt.write_text(json.dumps({"labels": {"0": "background", "1": "lesion"}, "training": [], "validation": []}))
    status = main(["evaluate", "--pred", str(tmp_path / "nowhere"), "--gt", str(gt), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and f"{gt}: the 'validation' section is empty" in err[0]
    assert not (tmp_path / "r").exists()
