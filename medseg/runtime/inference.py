"""Batched inference over many images, with loading and writing overlapped with the network's compute.

:func:`batched_inference` takes the pieces a bundle's ``inference.json`` defines (``preprocessing`` including the
loader, ``inferer``, ``postprocessing``) and runs them the way MONAI's ``SupervisedEvaluator`` does (collate, infer,
decollate, postprocess), but

* loads and preprocesses the next batch while the network runs on this one (in a background thread, or in
  DataLoader worker processes with ``num_workers``),
* runs the post-processing (``Invertd`` back to the original size, argmax) and the caller's ``sink`` (writing the
  mask) in a small thread pool while the network runs on the next batch,
* runs the network under the run's autocast, in channels_last where that is faster, with optional flip TTA,
* batches consecutive images whose preprocessed size agrees (a batch is cut where it changes), and with
  ``keep_going`` lets an image that fails (unreadable, wrong channels, ...) fail alone.

Results come back in input order. A bundle's pieces, e.g.::

    from monai.transforms import Compose
    results = batched_inference(
        [{"image": str(p), "name": p.stem} for p in paths], bundle.network,
        Compose([bundle.load, bundle.preprocessing]), bundle.postprocessing,
        inferer=bundle.inferer, device=bundle.device, amp_plan=resolve_amp(amp, bundle.device),
        channels_last=resolve_channels_last("auto", bundle.network, plan), batch_size=8,
        sink=lambda source, result: write_png_mask(result["pred"][0].numpy(), out / f"{source['name']}_mask.png", ..))
    for source, result in results: ...   # drives the run; rows for the CSV from result["pred"]

``medseg predict`` passes its loaded model's own steps instead (``prepare``, ``forward`` as the inferer,
``label_map`` as the post-processing, ``keep_going=True``: :func:`medseg.sharing.predict._predict_images`), so its
masks are those of the model's one-image ``segment``.
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


class _IndexedItems(torch.utils.data.Dataset):
    """``items[i]`` preprocessed, as ``(i, data, None)``, or ``(i, None, error)`` with ``keep_going``.

    The index travels with the item because a failed item leaves its batch and the preprocessing may drop keys.
    (Not ``monai.data.Dataset``: its ``apply_transform`` would map a transform over a tuple's elements.)
    """

    def __init__(self, items: list[dict], preprocessing: Callable[[dict], dict], keep_going: bool) -> None:
        self.items, self.preprocessing, self.keep_going = items, preprocessing, keep_going

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any, BaseException | None]:
        try:
            return index, self.preprocessing(self.items[index]), None
        except Exception as exc:
            if not self.keep_going:
                raise
            return index, None, exc


def _shape(data: dict) -> tuple:
    image = data.get("image")
    return tuple(image.shape) if hasattr(image, "shape") else ()


def _collate_runs(loaded: list[tuple[int, Any, BaseException | None]]) -> tuple[list, list]:
    """A loaded batch as ``(failed, runs)``: ``(index, error)`` per item that failed, and ``(indices, collated
    batch or error)`` per run of consecutive items whose ``"image"`` has one shape (a pipeline without a resize
    keeps each image's size, and images of different sizes cannot be stacked)."""
    from monai.data import list_data_collate

    failed = [(index, error) for index, _, error in loaded if error is not None]
    groups: list[tuple[list[int], list[dict]]] = []
    for index, data, error in loaded:
        if error is not None:
            continue
        if groups and _shape(groups[-1][1][-1]) == _shape(data):
            groups[-1][0].append(index)
            groups[-1][1].append(data)
        else:
            groups.append(([index], [data]))
    runs = []
    for indices, datas in groups:
        try:
            runs.append((indices, list_data_collate(datas)))
        except Exception as exc:  # e.g. items with different keys: those items fail, not the run
            runs.append((indices, exc))
    return failed, runs


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


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
    sink: Callable[[dict, dict], Any] | None = None,
    writer_threads: int = 1,
    keep_going: bool = False,
) -> Iterator[tuple[dict, dict]]:
    """Run ``network`` over ``items`` in batches; yield ``(input item, post-processed item)`` in input order.

    Args:
        items: one dict per image, e.g. ``{"image": "path.png"}``; passed to ``preprocessing``.
        network: the network, on ``device``, in eval mode (set here too); None when ``inferer`` runs a model of its
            own (e.g. an ensemble with its own test-time augmentation).
        preprocessing: loads and transforms one item (e.g. the bundle's ``Compose`` starting with ``LoadImaged``).
            Consecutive items whose output ``"image"`` has the same shape are batched together; a batch is cut
            where the shape changes (so a pipeline that resizes to the network's input size batches fully).
        postprocessing: applied to each decollated item with ``"pred"`` added (e.g. the bundle's ``Activationsd``,
            ``Invertd``, ``AsDiscreted``); None keeps the raw prediction.
        inferer: a MONAI inferer, ``inferer(images, network)`` (``network(x)`` when None).
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
        keep_going: False: the first error stops the run. True: an image whose loading, preprocessing,
            post-processing or ``sink`` raises (or whose batch's forward pass raises) gets ``{"error": exception}``
            as its result, and the other images go on.

    Yields:
        ``(input item, post-processed item)`` pairs, in the order of ``items``.

    Raises:
        BundleInputError: ``tta`` or ``batch_size`` is not valid.
        Whatever ``preprocessing``, the network, ``postprocessing`` or ``sink`` raise, unless ``keep_going``.
    """
    from monai.data import DataLoader, decollate_batch

    if tta not in TTA_SETTINGS:
        raise BundleInputError(f"tta: {tta!r} is not a valid setting; use one of {', '.join(TTA_SETTINGS)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BundleInputError(f"batch_size: {batch_size!r} is not valid; use a whole number of at least 1")
    if network is not None:
        network.eval()
    sources = list(items)
    dataset = _IndexedItems(sources, preprocessing, keep_going)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate_runs)
    batches = loader if num_workers > 0 else prefetch(loader)

    def finish(source: dict, item: dict) -> tuple[dict, dict]:
        try:
            out = postprocessing(item) if postprocessing is not None else item
            if sink is not None:
                out["sink"] = sink(source, out)
        except Exception as exc:
            if not keep_going:
                raise
            return source, {"error": exc}
        return source, out

    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=max(1, writer_threads), thread_name_prefix="medseg-write") as pool:
        try:
            for failed, runs in batches:
                outcomes: dict[int, Any] = dict(failed)
                for indices, batch in runs:
                    try:
                        if isinstance(batch, BaseException):
                            raise batch
                        images = batch["image"].to(device)
                        batch["pred"] = predict_batch(images, network, inferer, amp_plan, channels_last, tta).cpu()
                        image = batch["image"]
                        batch["image"] = image.cpu() if isinstance(image, torch.Tensor) else image
                        outcomes.update(zip(indices, decollate_batch(batch), strict=True))
                    except Exception as exc:
                        if not keep_going:
                            raise
                        outcomes.update((index, exc) for index in indices)
                for index in sorted(outcomes):
                    value = outcomes[index]
                    if isinstance(value, BaseException):
                        pending.append(_done((sources[index], {"error": value})))
                    else:
                        pending.append(pool.submit(finish, sources[index], value))
                # keep at most two batches in flight so memory stays bounded; hand back what is done, in order
                while len(pending) > 2 * batch_size or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            # stopped early (an error, or the caller closed the generator): do not start writes nobody will read
            for future in pending:
                future.cancel()
            if hasattr(batches, "close"):  # the loading thread stops now, not whenever the generator is collected
                batches.close()


def _data_loader_base() -> type:
    from monai.data import DataLoader

    return DataLoader


class PrefetchDataLoader(_data_loader_base()):
    """A MONAI ``DataLoader`` whose batches are made ``depth`` steps ahead in a background thread.

    What ``monai.data.ThreadDataLoader`` does for the random augmentation of cached items (it overlaps the training
    step, torch ops release the GIL), but an error in a transform is raised in the training loop instead of ending
    the epoch silently. It is a ``DataLoader`` (``len``, ``dataset``, ``sampler``, ``batch_size`` are its own), so
    MONAI's engines still call ``DistributedSampler.set_epoch`` on it in a distributed run. Whether the overlap pays
    depends on the cores left idle by the step (docs/runtime.md): the bundles keep a plain ``DataLoader``.

    Args:
        dataset: the dataset.
        depth: batches made ahead.
        kwargs: for ``monai.data.DataLoader`` (``batch_size``, ``shuffle``, ``num_workers``, ...).
    """

    def __init__(self, dataset: Any, depth: int = 1, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.depth = depth

    def __iter__(self) -> Iterator[Any]:
        return prefetch(super().__iter__(), self.depth)
