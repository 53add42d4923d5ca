"""ChoosePostprocessing: the decision training writes beside its kept checkpoint, from that epoch's maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from medseg.handlers import ChooseAtTrainingEnd, ChoosePostprocessing
from medseg.postprocessing import ApplyPostprocessingd, decision_beside


def one_hot(index_map: np.ndarray, k: int = 2) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(index_map).long(), k).permute(2, 0, 1).float()


def case(spurious: bool) -> dict:
    label = np.zeros((16, 16), np.uint8)
    label[4:10, 4:10] = 1
    pred = label.copy()
    if spurious:  # a speck away from the lesion: keep-largest-component removes it
        pred[13:15, 13:15] = 1
    return {"pred": one_hot(pred), "label": one_hot(label)}


def test_decision_comes_from_the_best_epoch_and_lands_beside_the_checkpoint(tmp_path):
    # epoch 1 (the best, saved as model.pt) predicts specks; epoch 2 (worse) predicts clean maps
    evaluator = Engine(lambda engine, batch: [case(spurious=engine.state.epoch == 1)])

    @evaluator.on(Events.EPOCH_COMPLETED)
    def key_metric(engine):  # what MONAI's evaluator records before other handlers: epoch 1 stays the best
        engine.state.best_metric_epoch = 1

    trainer = Engine(lambda engine, batch: None)
    chooser = ChoosePostprocessing(str(tmp_path), num_classes=2, metrics=["dice"])
    chooser.attach(evaluator)
    ChooseAtTrainingEnd(chooser).attach(trainer)
    evaluator.run([0, 1], max_epochs=2)
    assert not (tmp_path / "model_final.postprocessing.json").exists()  # made once, when training ends
    trainer.run([0], max_epochs=1)
    decision_file = decision_beside(tmp_path / "model.pt")
    assert decision_file == str(tmp_path / "postprocessing.json")
    decision = json.loads((tmp_path / "postprocessing.json").read_text())
    assert decision["classes"]["1"]["largest_component"] is True  # chosen on epoch 1's specks
    assert decision["scores"]["after"]["mean_dice"] > decision["scores"]["before"]["mean_dice"]
    # the last epoch's weights (model_final.pt) have the decision made on the last epoch's clean maps
    assert decision_beside(tmp_path / "model_final.pt") == str(tmp_path / "model_final.postprocessing.json")
    assert json.loads((tmp_path / "model_final.postprocessing.json").read_text())["classes"]["1"][
        "largest_component"] is False

    cleaned = ApplyPostprocessingd("pred", decision_file)({"pred": torch.as_tensor(
        np.argmax(case(spurious=True)["pred"].numpy(), 0)[None])})["pred"]
    assert int(cleaned[0, 13:15, 13:15].sum()) == 0 and int(cleaned[0, 4:10, 4:10].min()) == 1


def test_last_epoch_kept_gets_the_last_epochs_decision_and_the_best_epoch_its_own(tmp_path):
    # keep_checkpoint "last": model.pt is epoch 2 (clean maps, nothing to remove); model_best.pt is epoch 1 (specks)
    evaluator = Engine(lambda engine, batch: [case(spurious=engine.state.epoch == 1)])

    @evaluator.on(Events.EPOCH_COMPLETED)
    def key_metric(engine):
        engine.state.best_metric_epoch = 1

    chooser = ChoosePostprocessing(str(tmp_path), num_classes=2, metrics=["dice"], keep_checkpoint="last")
    chooser.attach(evaluator)
    trainer = Engine(lambda engine, batch: None)
    ChooseAtTrainingEnd(chooser).attach(trainer)
    evaluator.run([0, 1], max_epochs=2)
    trainer.run([0], max_epochs=1)
    kept = json.loads(Path(decision_beside(tmp_path / "model.pt")).read_text())
    best = json.loads(Path(decision_beside(tmp_path / "model_best.pt")).read_text())
    assert decision_beside(tmp_path / "model_best.pt") == str(tmp_path / "model_best.postprocessing.json")
    assert kept["classes"]["1"]["largest_component"] is False  # epoch 2's maps gain nothing from it
    assert best["classes"]["1"]["largest_component"] is True  # epoch 1's specks


def test_keep_checkpoint_must_be_best_or_last(tmp_path):
    from medseg.bundle import BundleInputError

    with pytest.raises(BundleInputError, match="--keep_checkpoint 'final': must be best .* or last"):
        ChoosePostprocessing(str(tmp_path), num_classes=2, keep_checkpoint="final")


def test_no_decision_means_nothing_applied(tmp_path):
    assert decision_beside(tmp_path / "model.pt") is None
    data = {"pred": torch.ones(1, 4, 4)}
    assert ApplyPostprocessingd("pred", None)(data)["pred"] is data["pred"]
