"""The override files of ``bundles/variants`` layered on a bundle's train.json, one tiny epoch each on phantoms.

Run as ``tests/bundles`` runs bundles (``ConfigWorkflow`` with the ``TINY`` overrides), with the variant file as the
second config file: ``--config_file "['bundles/cardiac_unet/configs/train.json','bundles/variants/X.json']"``.
"""

from __future__ import annotations

import json

import pytest
import torch

from medseg.networks import NETWORKS, variant_files
from tests.bundles.conftest import BUNDLES_DIR, TINY

# variant -> (bundle it is layered on, phantom kind, network class it must build)
VARIANTS = {
    "unet3plus": ("cardiac_unet", "cardiac-png", "UNet3Plus"),
    "deeplabv3": ("cardiac_unet", "cardiac-png", "DeepLabV3"),
    "deeplabv3plus": ("cardiac_unet", "cardiac-png", "DeepLabV3Plus"),
    "coursework_unet": ("cardiac_unet", "cardiac-png", "CourseworkUNet"),
    "fpn": ("isic_flexunet_resnet34", "isic", "FPN"),
}
# ids the variant files may override: those every bundle's train.json certainly has (see docs/networks.md)
ALLOWED_IDS = {
    "network_def", "loss", "optimizer", "lr_scheduler", "spatial_size", "learning_rate", "max_epochs",
    "train#dataloader#drop_last", "validate#key_metric", "+validate#additional_metrics",
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """``get(kind)``: a converted phantom dataset (12 cardiac PNG slices or 12 ISIC images at 48 px)."""
    from data_prep.__main__ import main as data_prep_main

    root = tmp_path_factory.mktemp("variant_data")
    made = {}

    def get(kind: str):
        if kind not in made:
            extra = ["--max-size", "48"] if kind == "isic" else []
            raw, out = root / f"raw_{kind}", root / kind
            assert data_prep_main(["phantom", kind, "--out", str(raw), "--n", "12", "--seed", "1"]) in (0, None)
            assert data_prep_main([kind, "--src", str(raw), "--out", str(out), "--seed", "1", *extra]) in (0, None)
            made[kind] = out
        return made[kind]

    return get


def test_every_registered_variant_has_a_file_with_allowed_ids():
    for name, network in NETWORKS.items():
        if network.variant is None:
            continue
        assert name in VARIANTS, f"{name} has no test below"
        content = json.loads((BUNDLES_DIR / "variants" / network.variant).read_text())
        assert set(content) <= ALLOWED_IDS, set(content) - ALLOWED_IDS
        assert content["network_def"]["_target_"] == network.target


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_trains_one_tiny_epoch(name, phantoms, tmp_path):
    import mlflow
    from monai.bundle import ConfigWorkflow

    from medseg.tracking.store import local_store_uri

    torch.set_num_threads(1)
    bundle, kind, network_class = VARIANTS[name]
    files = variant_files(name, BUNDLES_DIR / bundle / "configs" / "train.json")
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=str(BUNDLES_DIR / bundle / "configs" / "metadata.json"),
        workflow_type="train",
        dataset_dir=str(phantoms(kind)),
        output_dir=str(tmp_path),
        **TINY,
    )
    workflow.initialize()
    assert type(workflow.parser.get_parsed_content("network_def")).__name__ == network_class
    workflow.run()
    workflow.finalize()
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "model_final.pt").is_file()
    # the best checkpoint loads strictly into the variant's network (deep-supervision heads included)
    network = workflow.parser.get_parsed_content("network_def", instantiate=True)
    network.load_state_dict(torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=True))
    # tracked in MLflow like every bundle run, with the variant's network as the run's param
    client = mlflow.MlflowClient(local_store_uri())
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string=f"params.network = '{network_class}'"
    )
    assert runs, f"no MLflow run with network {network_class}"
    if name == "fpn":  # the published recipe: best-IoU checkpoint, step drop 1e-4 -> 1e-5 at epoch 25 of 40
        assert "val_mean_iou" in workflow.parser.get_parsed_content("validate#key_metric")
        scheduler = workflow.parser.get_parsed_content("lr_scheduler")
        assert list(scheduler.milestones) == [25] and scheduler.gamma == 0.1
        assert runs[0].data.params["loss"] == "DiceLoss"
