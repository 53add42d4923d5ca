"""The committed bundle configs are exactly the rendering of ``bundles/_source``."""

from __future__ import annotations

import json
import shutil

import pytest

from medseg.bundle.render import main, render_all, render_bundle
from tests.bundles.conftest import BUNDLES_DIR


def test_committed_configs_match_their_source():
    differ = render_all(BUNDLES_DIR, check=True)
    assert not differ, f"run `python -m medseg.bundle.render` and commit: {[str(p) for p in differ]}"


def test_drift_is_reported_and_repaired(tmp_path, capsys):
    bundles = tmp_path / "bundles"
    shutil.copytree(BUNDLES_DIR / "_source", bundles / "_source")
    shutil.copytree(BUNDLES_DIR / "cardiac_unet", bundles / "cardiac_unet")
    train = bundles / "cardiac_unet" / "configs" / "train.json"
    edited = json.loads(train.read_text())
    edited["max_epochs"] = 3  # a hand edit of a rendered config
    train.write_text(json.dumps(edited, indent=4) + "\n")

    assert main(["--bundles", str(bundles), "--check"]) == 1
    out = capsys.readouterr()
    assert str(train) in out.out and "python -m medseg.bundle.render" in out.err
    assert json.loads(train.read_text())["max_epochs"] == 3  # --check writes nothing

    assert main(["--bundles", str(bundles)]) == 0
    assert json.loads(train.read_text())["max_epochs"] != 3
    assert main(["--bundles", str(bundles), "--check"]) == 0


def test_sections_merge_like_monai_config_files():
    rendered = render_bundle("isic_flexunet_resnet34", BUNDLES_DIR / "_source")
    train, inference = rendered["train"], rendered["inference"]
    # "common" reaches both stand-alone configs: one network definition, one set of intensity transforms
    assert train["network_def"] == inference["network_def"]
    assert train["intensity_transforms"] == inference["intensity_transforms"]
    assert train["bundle_name"] == inference["bundle_name"] == "isic_flexunet_resnet34"
    # layers in order, then the bundle's own section: the ISIC layer's metric lands in the base's metric dict
    assert "val_thresholded_jaccard" in train["validate"]["additional_metrics"]
    assert "val_mean_iou" in train["validate"]["additional_metrics"]
    # overlays keep their id paths literal, to be merged over train.json by MONAI at run time
    dynunet = render_bundle("cardiac_dynunet", BUNDLES_DIR / "_source")
    assert dynunet["evaluate"]["network_def#deep_supervision"] is False


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda src: (src / "cardiac_unet.json").write_text("{not json"), "cardiac_unet.json: not valid JSON"),
        (lambda src: (src / "cardiac_unet.json").write_text('{"layers": ["nope"]}'), "nope.json: missing"),
        (lambda src: (src / "cardiac_unet.json").write_text('{"trian": {}}'), "unknown section(s) ['trian']"),
    ],
)
def test_bad_source_is_one_line_naming_the_file(tmp_path, capsys, edit, message):
    bundles = tmp_path / "bundles"
    shutil.copytree(BUNDLES_DIR / "_source", bundles / "_source")
    edit(bundles / "_source")
    assert main(["--bundles", str(bundles)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(bundles.glob("*/configs"))  # nothing half-written, not even the bundles before it
