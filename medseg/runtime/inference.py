"""Batched inference over many images, with loading and writing overlapped with the network's compute.

:func:`batched_inference` takes the pieces a bundle's ``inference.json`` defines (``preprocessing`` including the
loader, ``inferer``, ``postprocessing``) and runs them the way MONAI's ``SupervisedEvaluator`` does (collate, infer,
decollate, postprocess), but

* loads and preprocesses the next batch while the network runs on this one (in a background thread, or in
  DataLoader worker processes with ``num_workers``),
* runs the post-processing (``Invertd`` back to the original size, argmax) and the caller's ``sink`` (writing the
  mask) in a small thread pool while the network runs on the next batch,
* runs the network under the run's autocast, in channels_last where that is faster, with optional flip TTA.

Results come back in input order. ``medseg predict`` calls it with its bundle's pieces, e.g.::

    from monai.transforms import Compose
    results = batched_inference(
        [{"image": str(p), "source": str(p)} for p in paths], bundle.network,
        Compose([bundle.load, bundle.preprocessing]), bundle.postprocessing,
        inferer=bundle.inferer, device=bundle.device, amp_plan=resolve_amp(amp, bundle.device),
        channels_last=resolve_channels_last("auto", bundle.network, plan), batch_size=8,
        sink=lambda source, result: write_png_mask(result["pred"][0].numpy(), out / f"{source['name']}_mask.png", ..))
    for source, result in results: ...   # drives the run; rows for the CSV from result["pred"]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from medseg.bundle.errors import BundleInputError
from medseg.runtime.amp import AmpPlan
from medseg.runtime.inferer import to_float32
from medseg.runtime.network import to_channels_last

TTA_SETTINGS = ("none", "flips")
_END = object()


def prefetch(iterable: Any, depth: int = 2) -> Iterator[Any]:
    """Iterate ``iterable`` in one background thread, ``depth`` items ahead; its errors are raised here.

    (``monai.data.ThreadDataLoader``'s buffer thread would end the iteration silently on an error, losing the
    failing item and everything after it; MONAI 1.6.)
    """
    iterator = iter(iterable)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medseg-load") as pool:
        ahead = deque(pool.submit(next, iterator, _END) for _ in range(max(1, depth)))
        while True:
            value = ahead.popleft().result()
            if value is _END:
                return
            ahead.append(pool.submit(next, iterator, _END))
            yield value


def _flip_dims(tta: str, spatial_dims: int) -> list[tuple[int, ...]]:
    """The flips to average: none, or every combination of flips of the spatial axes (4 passes in 2D)."""
    if tta == "none":
        return [()]
    axes = list(range(2, 2 + spatial_dims))
    combos: list[tuple[int, ...]] = [()]
    for axis in axes:
        combos += [c + (axis,) for c in combos]
    return combos


def predict_batch(
    images: torch.Tensor,
    network: Any,
    inferer: Any = None,
    amp_plan: AmpPlan | None = None,
    channels_last: bool = False,
    tta: str = "none",
) -> torch.Tensor:
    """The network's fp32 output for one batch (under autocast, channels_last, flip TTA averaging the outputs).

    Args:
        images: (B, C, spatial...) on the network's device.
        network: the network, in eval mode.
        inferer: a MONAI inferer (``network(images)`` when None).
        amp_plan: autocast plan (fp32 when None).
        channels_last: feed the batch in channels_last (4D only).
        tta: ``none`` or ``flips`` (the mean of the outputs over every combination of spatial flips).
    """
    if tta not in TTA_SETTINGS:
        raise BundleInputError(f"tta: {tta!r} is not a valid setting; use one of {', '.join(TTA_SETTINGS)}")
    if channels_last:
        images = to_channels_last(images)
    total = None
    flips = _flip_dims(tta, images.ndim - 2)
    with torch.no_grad():  # not inference_mode: post-processing may update the output in place
        for dims in flips:
            x = torch.flip(images, dims) if dims else images
            with amp_plan.autocast() if amp_plan is not None else torch.autocast("cpu", enabled=False):
                out = inferer(x, network) if inferer is not None else network(x)
            out = to_float32(out)
            out = torch.flip(out, dims) if dims else out
            total = out if total is None else total + out
    return total / len(flips) if len(flips) > 1 else total


def batched_inference(
    items: Sequence[dict],
    network: Any,
    preprocessing: Callable[[dict], dict],
    postprocessing: Callable[[dict], dict] | None = None,
    *,
    inferer: Any = None,
    device: str | torch.device = "cpu",
    amp_plan: AmpPlan | None = None,
    channels_last: bool = False,
    batch_size: int = 8,
    num_workers: int = 0,
    tta: str = "none",
    sink: Callable[[dict], Any] | None = None,
    writer_threads: int = 1,
) -> Iterator[tuple[dict, dict]]:
    """Run ``network`` over ``items`` in batches; yield ``(input item, post-processed item)`` in input order.

    Args:
        items: one dict per image, e.g. ``{"image": "path.png"}``; passed to ``preprocessing``.
        network: the network, on ``device``, in eval mode (set here too).
        preprocessing: loads and transforms one item (e.g. the bundle's ``Compose`` starting with ``LoadImaged``);
            its output ``"image"`` must have the same shape for every item (the network's input size).
        postprocessing: applied to each decollated item with ``"pred"`` added (e.g. the bundle's ``Activationsd``,
            ``Invertd``, ``AsDiscreted``); None keeps the raw prediction.
        inferer: a MONAI inferer (``network(x)`` when None).
        device: the network's device.
        amp_plan: autocast plan.
        channels_last: feed batches in channels_last.
        batch_size: images per forward pass.
        num_workers: 0 loads in one background thread (:func:`prefetch`), which is what paid on 2 cores; more
            uses that many DataLoader worker processes.
        tta: ``none`` or ``flips``.
        sink: ``sink(input_item, result)`` for each image, in the writer thread pool (e.g. to write the mask file
            named after the input: the preprocessing may drop keys); what it returns is stored under ``"sink"``.
        writer_threads: threads for post-processing and ``sink`` (1 keeps writes in order and leaves the cores to
            the network).

    Yields:
        ``(input item, post-processed item)`` pairs, in the order of ``items``.

    Raises:
        BundleInputError: ``tta`` or ``batch_size`` is not valid.
        Whatever ``preprocessing``, the network, ``postprocessing`` or ``sink`` raise (the first error stops the run).
    """
    from monai.data import DataLoader, Dataset, decollate_batch

    if tta not in TTA_SETTINGS:
        raise BundleInputError(f"tta: {tta!r} is not a valid setting; use one of {', '.join(TTA_SETTINGS)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BundleInputError(f"batch_size: {batch_size!r} is not valid; use a whole number of at least 1")
    network.eval()
    sources, done = list(items), 0
    dataset = Dataset(sources, transform=preprocessing)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    batches = loader if num_workers > 0 else prefetch(loader)

    def finish(source: dict, item: dict) -> tuple[dict, dict]:
        out = postprocessing(item) if postprocessing is not None else item
        if sink is not None:
            out["sink"] = sink(source, out)
        return source, out

    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=max(1, writer_threads), thread_name_prefix="medseg-write") as pool:
        for batch in batches:
            images = batch["image"].to(device)
            batch["pred"] = predict_batch(images, network, inferer, amp_plan, channels_last, tta).cpu()
            batch["image"] = batch["image"].cpu() if isinstance(batch["image"], torch.Tensor) else batch["image"]
            for item in decollate_batch(batch):
                pending.append(pool.submit(finish, sources[done], item))
                done += 1
            # keep at most two batches in flight so memory stays bounded; hand back what is done, in order
            while len(pending) > 2 * batch_size or (pending and pending[0].done()):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class PrefetchDataLoader:
    """A ``torch.utils.data.DataLoader`` whose batches are made one step ahead in a background thread.

    What ``monai.data.ThreadDataLoader`` does for the random augmentation of cached items (it overlaps the training
    step, torch ops release the GIL), but an error in a transform is raised in the training loop instead of ending
    the epoch silently. ``len``, ``dataset``, ``sampler`` (``DistributedSampler.set_epoch``) are the wrapped loader's.

    Args:
        dataset: the dataset.
        depth: batches made ahead.
        kwargs: for ``monai.data.DataLoader`` (``batch_size``, ``shuffle``, ``num_workers``, ...).
    """

    def __init__(self, dataset: Any, depth: int = 1, **kwargs: Any) -> None:
        from monai.data import DataLoader

        self.loader = DataLoader(dataset, **kwargs)
        self.depth = depth

    def __iter__(self) -> Iterator[Any]:
        return prefetch(self.loader, self.depth)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.loader, name)
