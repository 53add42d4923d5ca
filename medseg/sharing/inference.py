"""Run a bundle's own ``inference.json`` pipeline on 2D images: ``medseg predict --trust`` only.

MONAI configs are Python, so this path runs only for a sender the user trusts; by default ``medseg predict``
builds the model from the manifest (:mod:`medseg.sharing.shared_model`). ``medseg predict --trust`` and
``monai.bundle run`` must give the same masks, so the pieces come from the bundle's
config (``network_def``, ``preprocessing``, ``inferer``, ``postprocessing``) and are applied in the order MONAI's
``SupervisedEvaluator`` applies them (collate, infer, decollate, postprocess). Only two things differ: the
``SaveImaged`` transforms are dropped (``medseg predict`` writes masks in the input's own format), and slices of
a volume enter the pipeline after its ``LoadImaged`` (they are already in memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.sharing.errors import SharingError

REQUIRED_KEYS = ("network_def", "preprocessing", "inferer", "postprocessing")


@dataclass
class InferenceBundle:
    """A checked bundle, loaded for inference.

    Attributes:
        folder: the bundle folder.
        network: the network with the bundle's weights, in eval mode on ``device``.
        load: the bundle's ``LoadImaged`` (None when it has none).
        preprocessing: the preprocessing after loading.
        inferer: the bundle's inferer.
        postprocessing: the postprocessing without ``SaveImaged``.
        metadata: ``configs/metadata.json``.
        device: the torch device.
        batch_size: images per forward pass when ``medseg predict`` batches a folder of images.
    """

    folder: Path
    network: Any
    load: Any
    preprocessing: Any
    inferer: Any
    postprocessing: Any
    metadata: dict
    device: Any
    batch_size: int = 8

    @property
    def data_format(self) -> dict:
        return self.metadata.get("network_data_format", {})

    @property
    def in_channels(self) -> int | None:
        return self.data_format.get("inputs", {}).get("image", {}).get("num_channels")

    @property
    def labels(self) -> dict[int, str]:
        """Label value -> class name, from ``network_data_format.outputs.pred.channel_def``."""
        channel_def = self.data_format.get("outputs", {}).get("pred", {}).get("channel_def", {})
        return {int(k): str(v) for k, v in channel_def.items()} or {0: "background", 1: "foreground"}

    def prepare(self, item: dict, source: str) -> dict:
        """Load (a path) and preprocess one 2D image with the bundle's own transforms.

        Args:
            item: ``{"image": path}`` for a file the bundle's ``LoadImaged`` reads, or ``{"image": MetaTensor}`` of a
                2D slice (spatial dims only, meta with ``original_channel_dim="no_channel"``).
            source: the input file, for error messages.

        Raises:
            SharingError: the image has the wrong number of channels.
        """
        if isinstance(item["image"], str) and self.load is not None:
            item = self.load(item)
        data = self.preprocessing(item)
        channels = int(data["image"].shape[0])
        if self.in_channels is not None and channels != int(self.in_channels):
            kind = {1: "greyscale", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}-channel")
            want = {1: "a greyscale image", 3: "an RGB image"}.get(
                int(self.in_channels), f"{self.in_channels} channels"
            )
            plural = "s" * (channels != 1)
            raise SharingError(
                source,
                f"is {kind} ({channels} channel{plural}) but this model expects {want}",
                f"convert the image to {want}",
            )
        return data

    def forward(self, images: Any) -> Any:
        """The bundle's inferer on a collated ``(N, C, H, W)`` batch, on the bundle's device, without autograd."""
        import torch

        with torch.no_grad():
            return self.inferer(images.to(self.device), self.network)

    def label_map(self, data: dict) -> Any:
        """One image's label map: the bundle's post-processing of one decollated item with ``"pred"`` added.

        Returns:
            a numpy ``uint8`` array with the input's spatial shape (as MONAI reads it).
        """
        import numpy as np
        import torch

        if isinstance(data["pred"], torch.Tensor):  # post-process where segment() does: on the bundle's device
            data = {**data, "pred": data["pred"].to(self.device)}
        pred = self.postprocessing(data)["pred"]
        pred = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
        if pred.ndim == 3:  # (C, spatial...) -> label map
            pred = pred[0] if pred.shape[0] == 1 else pred.argmax(0)
        return np.rint(pred).astype(np.uint8)

    def segment(self, item: dict, source: str) -> Any:
        """Segment one 2D image (:meth:`prepare`, :meth:`forward` on a batch of one, :meth:`label_map`).

        Args:
            item: see :meth:`prepare`.
            source: the input file, for error messages.

        Returns:
            the label map, a numpy ``uint8`` array with the input's spatial shape (as MONAI reads it).

        Raises:
            SharingError: the image has the wrong number of channels or cannot be processed.
        """
        from monai.data import decollate_batch, list_data_collate

        batch = list_data_collate([self.prepare(item, source)])
        batch["pred"] = self.forward(batch["image"])
        return self.label_map(decollate_batch(batch)[0])

    def segment_many(self, items: list[dict], source: str) -> list[Any]:
        """Segment several 2D images one at a time (as ``SupervisedEvaluator`` with batch size 1)."""
        return [self.segment(item, source) for item in items]


def _drop_savers(parser: Any) -> None:
    """Remove ``SaveImage(d)`` from the raw postprocessing before it is built.

    ``medseg predict`` writes masks itself; building the savers would also evaluate what only they use (an
    output folder, an extension computed from the bundle's own datalist).
    """
    config = parser.get("postprocessing")
    if isinstance(config, dict) and isinstance(config.get("transforms"), list):
        kept = [t for t in config["transforms"] if not str(_target_of(t)).split(".")[-1].startswith("SaveImage")]
        parser["postprocessing::transforms"] = kept


def _target_of(item: Any) -> str:
    return item.get("_target_", "") if isinstance(item, dict) else ""


def _without(compose: Any, kinds: tuple[type, ...]) -> Any:
    from monai.transforms import Compose

    return Compose([t for t in compose.transforms if not isinstance(t, kinds)])


def load_inference_bundle(folder: str | Path, device: str = "cpu") -> InferenceBundle:
    """Parse ``configs/inference.json`` and load ``models/model.pt`` with ``weights_only=True``.

    Args:
        folder: a bundle folder that passed :func:`medseg.sharing.check.check_bundle` (or is trusted).
        device: ``cpu`` or ``cuda``.

    Returns:
        the loaded bundle.

    Raises:
        SharingError: the config lacks a required key, the model file is missing, or its weights do not fit.
    """
    import torch
    from monai.bundle import ConfigParser
    from monai.transforms import Compose, LoadImaged, SaveImaged

    folder = Path(folder)
    config_file = folder / "configs" / "inference.json"
    model_file = folder / "models" / "model.pt"
    for path in (config_file, model_file):
        if not path.is_file():
            raise SharingError(
                folder,
                f"has no {path.relative_to(folder).as_posix()}",
                "ask the sender for the complete bundle made by 'medseg package'",
            )
    if device == "cuda" and not torch.cuda.is_available():
        raise SharingError(device, "CUDA is not available on this machine", "use --device cpu")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.read_meta(str(folder / "configs" / "metadata.json"))
    missing = [k for k in REQUIRED_KEYS if k not in parser]
    if missing:
        raise SharingError(
            config_file, f"lacks {missing}", "an inference.json in the MONAI model-zoo layout defines them"
        )
    parser["bundle_root"] = str(folder)
    parser["device"] = f"$torch.device('{device}')"
    _drop_savers(parser)
    try:
        network = parser.get_parsed_content("network_def")
        preprocessing = parser.get_parsed_content("preprocessing")
        inferer = parser.get_parsed_content("inferer")
        postprocessing = parser.get_parsed_content("postprocessing")
    except (Exception, SystemExit) as exc:  # a config that does not build (medseg helpers exit with a message)
        raise SharingError(config_file, f"cannot be built ({type(exc).__name__}: {exc})") from exc
    try:
        state = torch.load(model_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error is a file that is not weights only (it never runs)
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise SharingError(model_file, f"cannot be loaded with weights_only=True ({reason})") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a MONAI CheckpointSaver file
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise SharingError(model_file, f"does not fit the network in inference.json ({exc})") from exc
    network.to(device).eval()
    transforms = preprocessing.transforms if isinstance(preprocessing, Compose) else [preprocessing]
    loaders = [t for t in transforms if isinstance(t, LoadImaged)]
    return InferenceBundle(
        folder=folder,
        network=network,
        load=loaders[0] if loaders else None,
        preprocessing=Compose([t for t in transforms if not isinstance(t, LoadImaged)]),
        inferer=inferer,
        postprocessing=_without(postprocessing, (SaveImaged,))
        if isinstance(postprocessing, Compose)
        else postprocessing,
        metadata=parser.get("_meta_", {}),
        device=torch.device(device),
    )
