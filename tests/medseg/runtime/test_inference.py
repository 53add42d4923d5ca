"""batched_inference: same masks as one image at a time, input order, original sizes, TTA, bad settings, failed
items kept apart (keep_going), batches cut where the image size changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import decollate_batch, list_data_collate
from monai.networks.nets import UNet
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImaged,
    Resized,
    ScaleIntensityRanged,
)
from PIL import Image

from medseg.bundle import BundleInputError
from medseg.runtime import AmpPlan, batched_inference, predict_batch


@pytest.fixture
def pngs(tmp_path):
    """Five greyscale PNGs of different sizes."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(40, 30), (32, 32), (50, 20), (24, 36), (33, 41)]):
        path = tmp_path / f"case{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def pipeline():
    pre = Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            ScaleIntensityRanged("image", 0, 255, 0, 1),
            Resized("image", (32, 32), mode="bilinear"),
        ]
    )
    post = Compose(
        [
            Activationsd("pred", softmax=True),
            Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False),
            AsDiscreted("pred", argmax=True),
        ]
    )
    torch.manual_seed(0)
    net = UNet(2, 1, 3, (4, 8), (2,), num_res_units=0).eval()
    return pre, post, net


def one_at_a_time(paths, pre, post, net):
    """What MONAI's SupervisedEvaluator does with batch size 1."""
    masks = []
    for path in paths:
        batch = list_data_collate([pre({"image": str(path)})])
        with torch.no_grad():
            batch["pred"] = net(batch["image"])
        masks.append(post(decollate_batch(batch)[0])["pred"][0].numpy())
    return masks


@pytest.mark.parametrize("num_workers", [0, 1])
def test_same_masks_in_order_at_original_size(pngs, num_workers):
    pre, post, net = pipeline()
    expected = one_at_a_time(pngs, pre, post, net)
    written = []
    pairs = list(
        batched_inference(
            [{"image": str(p), "source": p.name} for p in pngs],
            net,
            pre,
            post,
            batch_size=2,
            num_workers=num_workers,
            channels_last=True,
            sink=lambda source, result: written.append(source["source"]) or result["pred"].shape,
        )
    )
    sources, results = zip(*pairs, strict=True)
    assert [s["source"] for s in sources] == [p.name for p in pngs] == written
    assert [r["sink"] for r in results] == [r["pred"].shape for r in results]
    for result, mask, path in zip(results, expected, pngs, strict=True):
        width, height = Image.open(path).size
        assert result["pred"].shape == (1, width, height)  # MONAI reads PNGs column first
        np.testing.assert_array_equal(result["pred"][0].numpy(), mask)


def test_bf16_agrees_with_fp32(pngs):
    pre, post, net = pipeline()
    items = [{"image": str(p)} for p in pngs]
    fp32 = [r["pred"] for _, r in batched_inference(items, net, pre, post, batch_size=4)]
    bf16_plan = AmpPlan(True, torch.bfloat16, "cpu", "test")
    bf16 = [r["pred"] for _, r in batched_inference(items, net, pre, post, batch_size=4, amp_plan=bf16_plan)]
    agreement = np.mean([(a == b).float().mean().item() for a, b in zip(fp32, bf16, strict=True)])
    assert agreement > 0.95


def test_flip_tta_averages_flipped_predictions():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 2, 3, padding=1).eval()  # not flip-symmetric
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        expected = sum(torch.flip(net(torch.flip(x, d)), d) if d else net(x) for d in [(), (2,), (3,), (2, 3)]) / 4
        plain = net(x)
    torch.testing.assert_close(predict_batch(x, net, tta="flips"), expected)
    torch.testing.assert_close(predict_batch(x, net, tta="none"), plain)
    assert not torch.allclose(expected, plain)


@pytest.mark.parametrize("kwargs, start", [({"tta": "rot90"}, "tta: 'rot90'"), ({"batch_size": 0}, "batch_size: 0")])
def test_bad_settings_are_one_line(pngs, kwargs, start):
    pre, post, net = pipeline()
    with pytest.raises(BundleInputError) as info:
        next(batched_inference([{"image": str(pngs[0])}], net, pre, post, **kwargs))
    assert str(info.value).startswith(start) and "\n" not in str(info.value)


def test_a_failing_item_stops_the_run(pngs, tmp_path):
    pre, post, net = pipeline()
    items = [{"image": str(pngs[0])}, {"image": str(tmp_path / "missing.png")}]
    with pytest.raises(RuntimeError):
        list(batched_inference(items, net, pre, post, batch_size=1))


def test_prefetch_keeps_order_and_raises_errors():
    from medseg.runtime import prefetch

    assert list(prefetch(range(5), depth=2)) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for value in prefetch(failing()):
            got.append(value)
    assert got == [1]


def test_prefetch_data_loader_is_a_loader_that_raises():
    from monai.data import Dataset

    from medseg.runtime import PrefetchDataLoader

    loader = PrefetchDataLoader(list(range(10)), batch_size=4, shuffle=False)
    assert len(loader) == 3 and loader.batch_size == 4 and loader.sampler is not None
    assert [b.tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]

    def transform(x):
        if x == 6:
            raise ValueError("bad item 6")
        return x

    failing = PrefetchDataLoader(Dataset(list(range(10)), transform=transform), batch_size=4)
    seen = []
    with pytest.raises(Exception, match="bad item 6|applying transform"):
        for batch in failing:
            seen.append(batch)
    assert len(seen) == 1  # the first batch arrived, the second raised (ThreadDataLoader would just stop)


def test_prefetch_data_loader_gives_the_same_batches_and_epochs_to_a_distributed_sampler():
    """The bundles' training loader: the same seeded augmented batches as a DataLoader, and (being one) MONAI's
    engines set its DistributedSampler's epoch, so each epoch of a distributed run is shuffled anew."""
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedTrainer
    from monai.transforms import RandGaussianNoised
    from torch.utils.data.distributed import DistributedSampler

    from medseg.runtime import PrefetchDataLoader

    def batches(loader_class) -> list[torch.Tensor]:
        noise = RandGaussianNoised("image", prob=1.0, std=1.0)
        noise.set_random_state(seed=3)
        data = Dataset([{"image": torch.zeros(1, 4, 4)} for _ in range(6)], transform=noise)
        torch.manual_seed(0)
        return [b["image"] for b in loader_class(data, batch_size=4, shuffle=True)]

    plain, prefetched = batches(DataLoader), batches(PrefetchDataLoader)
    assert len(plain) == len(prefetched) == 2 and all(torch.equal(a, b) for a, b in zip(plain, prefetched, strict=True))

    sampler = DistributedSampler(list(range(8)), num_replicas=2, rank=0, shuffle=True)
    loader = PrefetchDataLoader([{"image": torch.ones(1, 2, 2), "label": torch.ones(1, 2, 2)}] * 8, batch_size=2,
                                sampler=sampler)  # fmt: skip
    network = torch.nn.Conv2d(1, 1, 1)
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=3, train_data_loader=loader, network=network,
                                optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
                                loss_function=torch.nn.MSELoss())  # fmt: skip
    trainer.run()
    assert sampler.epoch == 3 and trainer.state.iteration == 3 * len(loader)


def test_keep_going_fails_items_alone_in_order(pngs, tmp_path):
    pre, post, net = pipeline()
    expected = one_at_a_time(pngs, pre, post, net)
    missing = tmp_path / "missing.png"
    items = [{"image": str(p)} for p in pngs[:2]] + [{"image": str(missing)}] + [{"image": str(p)} for p in pngs[2:]]

    def flaky_post(item):
        if item["image"].meta["filename_or_obj"].endswith("case3.png"):
            raise ValueError("bad post-processing")
        return post(item)

    pairs = list(batched_inference(items, net, pre, flaky_post, batch_size=3, keep_going=True))
    assert [s["image"] for s, _ in pairs] == [i["image"] for i in items]
    results = [r for _, r in pairs]
    assert isinstance(results[2]["error"], RuntimeError) and isinstance(results[4]["error"], ValueError)
    for item, image in {0: 0, 1: 1, 3: 2, 5: 4}.items():  # the others, case3.png (item 4) excepted
        np.testing.assert_array_equal(results[item]["pred"][0].numpy(), expected[image])


def test_keep_going_fails_a_batch_whose_forward_fails(pngs):
    pre, post, net = pipeline()

    def inferer(images, network):
        if len(images) == 1:  # the last batch of 5 images by 2
            raise RuntimeError("out of memory")
        return network(images)

    items = [{"image": str(p)} for p in pngs]
    results = [r for _, r in batched_inference(items, net, pre, post, inferer=inferer, batch_size=2, keep_going=True)]
    assert ["error" in r for r in results] == [False, False, False, False, True]
    assert str(results[4]["error"]) == "out of memory"


def test_images_of_different_sizes_are_batched_by_shape(pngs):
    """Without a resize each image keeps its size: a batch is cut where the shape changes."""
    pre = Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            ScaleIntensityRanged("image", 0, 255, 0, 1),
        ]
    )
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 2, 3, padding=1).eval()
    post = AsDiscreted("pred", argmax=True)
    paths = [pngs[1], pngs[1], pngs[0], pngs[1]]  # 32x32, 32x32, 40x30, 32x32
    sizes = []

    def inferer(images, network):
        sizes.append(tuple(images.shape))
        return network(images)

    items = [{"image": str(p)} for p in paths]
    results = [r["pred"] for _, r in batched_inference(items, net, pre, post, inferer=inferer, batch_size=4)]
    assert sizes == [(2, 1, 32, 32), (1, 1, 30, 40), (1, 1, 32, 32)]
    np.testing.assert_array_equal(results[0], one_at_a_time([pngs[1]], pre, post, net)[0][None])
    assert [tuple(r.shape) for r in results] == [(1, 32, 32), (1, 32, 32), (1, 30, 40), (1, 32, 32)]
