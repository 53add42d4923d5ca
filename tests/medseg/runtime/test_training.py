"""A tiny UNet learns a tiny task through MONAI's SupervisedTrainer in fp32 and in bf16 with medseg's amp wiring."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import MeanDice, from_engine
from monai.losses import DiceLoss
from monai.networks.nets import UNet
from monai.transforms import AsDiscrete

from medseg.runtime import (
    AmpInferer,
    AmpPlan,
    ChannelsLastPrepareBatch,
    engine_amp,
    engine_amp_kwargs,
    prepare_network,
)

SIZE = 16


def squares(n: int, seed: int) -> list[dict]:
    """Bright squares of random size and place on noise; the label is the square."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        side = int(torch.randint(4, 9, (1,), generator=generator))
        top, left = (int(v) for v in torch.randint(0, SIZE - side, (2,), generator=generator))
        label = torch.zeros(1, SIZE, SIZE)
        label[:, top : top + side, left : left + side] = 1
        image = 0.6 * label + 0.4 * torch.rand(1, SIZE, SIZE, generator=generator)
        items.append({"image": image, "label": label})
    return items


def validation_dice(network, plan, prepare_batch, data) -> float:
    post = AsDiscrete(threshold=0.5)
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=torch.utils.data.DataLoader(data, batch_size=8),
        network=network,
        inferer=AmpInferer(plan=plan),
        prepare_batch=prepare_batch,
        postprocessing=lambda out: {**out, "pred": post(torch.sigmoid(out["pred"]))},
        key_val_metric={"dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        amp=engine_amp(plan),
        amp_kwargs=engine_amp_kwargs(plan),
        decollate=False,
    )
    evaluator.run()
    return evaluator.state.metrics["dice"]


@pytest.mark.parametrize("plan", [AmpPlan(False, None, "cpu", "fp32"), AmpPlan(True, torch.bfloat16, "cpu", "bf16")])
def test_tiny_unet_learns(plan):
    torch.manual_seed(0)
    train, val = squares(32, seed=1), squares(16, seed=2)
    net = UNet(2, 1, 1, (8, 16), (2,), num_res_units=0, norm="batch")
    net = prepare_network(net, "cpu", channels_last="auto", amp_plan=plan)
    prepare_batch = ChannelsLastPrepareBatch(enabled=plan.enabled)
    start = validation_dice(net, plan, prepare_batch, val)
    trainer = SupervisedTrainer(
        device="cpu",
        max_epochs=8,
        train_data_loader=torch.utils.data.DataLoader(train, batch_size=8, shuffle=True),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 0.02),
        loss_function=DiceLoss(sigmoid=True),
        inferer=AmpInferer(plan=plan),
        prepare_batch=prepare_batch,
        amp=engine_amp(plan),
        amp_kwargs=engine_amp_kwargs(plan),
        decollate=False,
    )
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output["pred"].dtype))
    trainer.run()
    assert trainer.scaler is None or not trainer.scaler.is_enabled()  # no loss scaling for bf16 or fp32
    assert set(outputs) == {torch.float32}  # the loss saw fp32 predictions
    end = validation_dice(net, plan, prepare_batch, val)
    assert end > 0.8 and end > start + 0.3, (start, end)
