"""A shared model built from its ``manifest.json`` and medseg's own code only.

Nothing the package chose is imported or evaluated: the network comes from :mod:`medseg.sharing.registry`, the
weights from safetensors files (no pickle), the steps from registered names. The pipeline mirrors the MONAI
bundle's (read, channels first, registered steps, network, softmax, ``Invertd`` back to the input's geometry,
argmax) so both give the same masks, plus what the manifest adds: a k-fold ensemble (mean softmax over
several weight files), test-time augmentation and per-class post-processing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.sharing.errors import SharingError

if TYPE_CHECKING:
    from medseg.sharing.runtime import BackendChoice


@dataclass
class SharedModel:
    """A loaded manifest: networks (one per weight file), preprocessing and settings.

    Attributes:
        folder: the package folder.
        manifest: the validated manifest.
        networks: the networks in eval mode on ``device``.
        preprocessing: the registered steps (reading excluded).
        device: ``cpu`` or ``cuda``.
        batch_size: images (or slices) per forward pass; the manifest's ``inference.batch_size`` unless set.
        backend: which library runs the networks (:func:`medseg.sharing.runtime.choose_backend`); None: PyTorch.
    """

    folder: Path
    manifest: dict
    networks: list
    preprocessing: Any
    device: str
    batch_size: int | None = None
    backend: BackendChoice | None = None

    def __post_init__(self) -> None:
        if self.batch_size is None:
            self.batch_size = int(self.manifest["inference"].get("batch_size", 8))

    @property
    def labels(self) -> dict[int, str]:
        return {int(k): v for k, v in self.manifest["labels"].items()}

    @property
    def in_channels(self) -> int:
        return int(self.manifest["input"]["num_channels"])

    @property
    def metadata(self) -> dict:
        return self.manifest

    def runtime_notes(self) -> list[str]:
        """One line on the backend, and one per network that ONNX Runtime was offered: which runs it and why."""
        if self.backend is None:
            return []
        notes = [f"backend: {self.backend.reason}"]
        for k, network in enumerate(self.networks):
            choice = getattr(network, "choice", None)
            if choice is not None:
                notes.append(f"network {k + 1} of {len(self.networks)}: {choice}" if len(self.networks) > 1
                             else f"network: {choice}")  # fmt: skip
        return notes

    def prepare(self, item: dict, source: str) -> dict:
        """Read (a path) or take (an in-memory slice) one 2D image and run the registered steps.

        Raises:
            SharingError: the image has the wrong number of channels.
        """
        from monai.transforms import EnsureChannelFirstd, LoadImaged

        if isinstance(item["image"], str | Path):
            item = LoadImaged(keys="image", image_only=True)(item)
        item = EnsureChannelFirstd(keys="image")(item)
        data = self.preprocessing(item)
        channels = int(data["image"].shape[0])
        if channels != self.in_channels:
            kind = {1: "greyscale", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}-channel")
            want = {1: "a greyscale image", 3: "an RGB image"}.get(self.in_channels, f"{self.in_channels} channels")
            plural = "s" * (channels != 1)
            raise SharingError(
                source,
                f"is {kind} ({channels} channel{plural}) but this model expects {want}",
                f"convert the image to {want}",
            )
        return data

    def probabilities(self, images: Any) -> Any:
        """Mean softmax over the ensemble and the TTA augmentations of a (N, C, H, W) batch."""
        import torch

        from medseg.sharing.runtime import inference_context
        from medseg.sharing.tta import tta_softmax

        inference = self.manifest["inference"]
        images = torch.as_tensor(images).as_subclass(torch.Tensor).to(self.device)  # a collated MetaTensor too
        total = None
        with inference_context(self.device, bool(inference.get("amp", True))):
            for network in self.networks:
                probs = tta_softmax(network, images, inference.get("tta"))
                total = probs if total is None else total + probs
        return (total / len(self.networks)).float().cpu()

    def forward(self, images: Any) -> Any:
        """A batch's output as :meth:`label_map` takes it: its :meth:`probabilities`."""
        return self.probabilities(images)

    def label_map(self, data: dict) -> Any:
        """One image's label map from its prepared ``data`` with ``"pred"`` (its probabilities) added.

        ``Invertd`` back to the input's geometry, argmax, then the manifest's per-class post-processing.

        Returns:
            a ``uint8`` label map in the input's spatial shape (as MONAI reads it).
        """
        import numpy as np
        import torch
        from monai.data import MetaTensor
        from monai.transforms import Invertd

        from medseg.sharing.postprocess import apply_decision
        from medseg.transforms.labels import channel_argmax

        invert = Invertd(keys="pred", transform=self.preprocessing, orig_keys="image", nearest_interp=False)
        data = dict(data)
        data["pred"] = MetaTensor(data["pred"], meta=dict(data["image"].meta))
        prob = invert(data)["pred"]
        label_map = channel_argmax(prob, 0, keepdim=True).to(torch.uint8)
        label_map = apply_decision(label_map, self.manifest["postprocessing"].get("classes", {}))
        return np.asarray(torch.as_tensor(label_map)[0].cpu().numpy(), dtype=np.uint8)

    def segment_many(self, items: list[dict], source: str) -> list[Any]:
        """Segment 2D images (paths or in-memory slices), ``batch_size`` at a time.

        Returns:
            one ``uint8`` label map per item, in the input's spatial shape (as MONAI reads it).

        Raises:
            SharingError: an image has the wrong number of channels.
        """
        import torch

        prepared = [self.prepare(item, source) for item in items]
        results = []
        for chunk in _same_shape_batches(prepared, int(self.batch_size)):
            images = torch.stack([torch.as_tensor(d["image"]).as_subclass(torch.Tensor) for d in chunk])
            probs = self.probabilities(images)
            results += [self.label_map({**data, "pred": prob}) for data, prob in zip(chunk, probs, strict=True)]
        return results

    def segment(self, item: dict, source: str) -> Any:
        """Segment one 2D image; see :meth:`segment_many`."""
        return self.segment_many([item], source)[0]


def _same_shape_batches(prepared: list[dict], size: int) -> list[list[dict]]:
    """Consecutive items of one shape, at most ``size`` at a time (a manifest without ``resize`` keeps sizes)."""
    from medseg.sharing.runtime import batches

    runs: list[list[dict]] = []
    for data in prepared:
        if runs and tuple(runs[-1][-1]["image"].shape) == tuple(data["image"].shape):
            runs[-1].append(data)
        else:
            runs.append([data])
    return [chunk for run in runs for chunk in batches(run, size)]


def _load_weights(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise SharingError(path, f"is not a safetensors weights file ({exc})", "ask the sender for a new copy") from exc


def _network_with_weights(name: str, arguments: dict, state: dict) -> Any:
    """The registered network with ``state`` loaded (strict), built without initialising weights it then replaces.

    The network is built on the ``meta`` device and takes the weights' tensors (``assign``); a network that keeps a
    tensor outside its state dict (a non-persistent buffer) is built and initialised normally instead.

    Raises:
        RuntimeError: ``state`` does not fit the network.
    """
    import torch

    from medseg.sharing.registry import build_network

    with torch.device("meta"):  # random initialisation of a ResNet34 U-Net costs more than reading its weights
        network = build_network(name, arguments)
    network.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in itertools.chain(network.parameters(), network.buffers())):
        network = build_network(name, arguments)
        network.load_state_dict(state, strict=True)
    return network


def load_shared_model(
    folder: str | Path, manifest: dict, device: str = "cpu", backend: str | None = "torch"
) -> SharedModel:
    """Build the networks and preprocessing a validated manifest describes and load its safetensors weights.

    Args:
        folder: the package folder.
        manifest: its validated manifest.
        device: ``cpu`` or ``cuda``.
        backend: ``torch`` (default: the networks stay torch modules, as ``medseg package``'s check needs
            them), ``onnxruntime``, ``auto`` or None (``$MEDSEG_BACKEND``, default ``auto``: what ``medseg predict``
            passes); see :func:`medseg.sharing.runtime.choose_backend`. ONNX exports are cached in
            ``$MEDSEG_HOME/cache/onnx``, found by the weights' sha256 as the manifest records it.

    Raises:
        SharingError: CUDA unavailable, a weights file that is not safetensors or does not fit the network, or a
            backend that cannot run here.
    """
    import torch

    from medseg.sharing.check import sha256_file
    from medseg.sharing.registry import build_preprocessing
    from medseg.sharing.runtime import choose_backend

    folder = Path(folder)
    if device == "cuda" and not torch.cuda.is_available():
        raise SharingError(device, "CUDA is not available on this machine", "use --device cpu")
    choice = choose_backend(backend, device, bool(manifest["inference"].get("amp", True)))
    networks = []
    for entry in manifest["weights"]:
        path = folder / entry["file"]
        state = _load_weights(path)
        try:
            network = _network_with_weights(manifest["network"]["name"], manifest["network"]["arguments"], state)
        except RuntimeError as exc:
            raise SharingError(
                path, f"does not fit the manifest's network ({str(exc).splitlines()[0]})", "re-package the model"
            ) from exc
        network = network.to(device).eval()
        if choice.onnxruntime:
            recorded = manifest.get("files", {}).get(entry["file"])
            network = _onnx_network(network, manifest, recorded or sha256_file(path), choice.require)
        networks.append(network)
    preprocessing = build_preprocessing(manifest["preprocessing"])
    return SharedModel(folder, manifest, networks, preprocessing, device, backend=choice)


def _onnx_network(network: Any, manifest: dict, weights_sha256: str, require: bool) -> Any:
    """The network wrapped for ONNX Runtime, its export cached under the weights' sha256 and the network's build."""
    import json

    from medseg.runtime.onnx_backend import OnnxRuntimeNetwork
    from medseg.tracking import medseg_home

    build = json.dumps([manifest["network"]["name"], manifest["network"]["arguments"]], sort_keys=True)
    return OnnxRuntimeNetwork(network, f"{weights_sha256} {build}", medseg_home() / "cache" / "onnx", require=require)
