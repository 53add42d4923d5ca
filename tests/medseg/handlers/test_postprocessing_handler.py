"""ChoosePostprocessing: the decision training writes beside its best checkpoint, from the best epoch's maps."""

from __future__ import annotations

import json

import numpy as np
import torch
from ignite.engine import Engine, Events

from medseg.handlers import ChoosePostprocessing
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

    ChoosePostprocessing(str(tmp_path), num_classes=2, metrics=["dice"]).attach(evaluator)
    evaluator.run([0, 1], max_epochs=2)
    decision_file = decision_beside(tmp_path / "model.pt")
    assert decision_file == str(tmp_path / "postprocessing.json")
    decision = json.loads((tmp_path / "postprocessing.json").read_text())
    assert decision["classes"]["1"]["largest_component"] is True  # chosen on epoch 1's specks
    assert decision["scores"]["after"]["mean_dice"] > decision["scores"]["before"]["mean_dice"]

    cleaned = ApplyPostprocessingd("pred", decision_file)({"pred": torch.as_tensor(
        np.argmax(case(spurious=True)["pred"].numpy(), 0)[None])})["pred"]
    assert int(cleaned[0, 13:15, 13:15].sum()) == 0 and int(cleaned[0, 4:10, 4:10].min()) == 1


def test_no_decision_means_nothing_applied(tmp_path):
    assert decision_beside(tmp_path / "model.pt") is None
    data = {"pred": torch.ones(1, 4, 4)}
    assert ApplyPostprocessingd("pred", None)(data)["pred"] is data["pred"]
