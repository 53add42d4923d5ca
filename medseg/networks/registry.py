"""The networks a bundle can be switched to by name, with the override file that switches it.

``medseg sweep --grid 'network=[unet,unet3plus,deeplabv3,coursework_unet]'`` (or any tool comparing networks) turns a
name into the override files to layer on a bundle's ``train.json`` with :func:`variant_files`; an unknown name ends in
one line listing the registered ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["NETWORKS", "RegisteredNetwork", "UnknownNetworkError", "get_network", "variant_files"]


def variants_dir() -> Path:
    """The override files: ``bundles/variants`` found by the bundle rule (a clone's, else the installed copy)."""
    from medseg.bundle.paths import shared_file

    return shared_file("variants")


class UnknownNetworkError(ValueError):
    """A network name that is not registered; the message lists the registered names."""


@dataclass(frozen=True)
class RegisteredNetwork:
    """A network configs can name.

    Attributes:
        name: the short name used on the command line.
        target: the config's ``_target_``.
        variant: the override file under ``bundles/variants/`` that puts it in a bundle, or None for the network a
            bundle already has (its ``train.json`` alone).
        task: the data it was set up for (``"cardiac"`` or ``"isic"``).
        summary: one line for listings.
    """

    name: str
    target: str
    variant: str | None
    task: str
    summary: str


NETWORKS: dict[str, RegisteredNetwork] = {
    n.name: n
    for n in (
        RegisteredNetwork("unet", "UNet", None, "cardiac", "MONAI UNet as the bundle configures it (the baseline)"),
        RegisteredNetwork(
            "unet3plus", "medseg.networks.UNet3Plus", "cardiac_unet3plus.json", "cardiac",
            "UNet 3+ with full-scale skips and deep supervision (Huang et al. 2020)",
        ),
        RegisteredNetwork(
            "deeplabv3", "medseg.networks.DeepLabV3", "cardiac_deeplabv3.json", "cardiac",
            "DeepLabV3, ResNet18 backbone, output stride 8 (torchvision's model and head)",
        ),
        RegisteredNetwork(
            "deeplabv3plus", "medseg.networks.DeepLabV3Plus", "cardiac_deeplabv3plus.json", "cardiac",
            "DeepLabV3+, ResNet18 backbone, output stride 16",
        ),
        RegisteredNetwork(
            "coursework_unet", "medseg.networks.CourseworkUNet", "cardiac_coursework_unet.json", "cardiac",
            "the coursework's 3-stage U-Net (LeakyReLU, dropout after pooling, 1x1 output)",
        ),
        RegisteredNetwork(
            "fpn", "medseg.networks.FPN", "isic_fpn.json", "isic",
            "FPN head on the tv_resnet34 encoder with the published dermoscopy recipe",
        ),
    )
}


def get_network(name: str) -> RegisteredNetwork:
    """The registered network called ``name``.

    Raises:
        UnknownNetworkError: ``name`` is not registered (one line listing the registered names).
    """
    if name not in NETWORKS:
        raise UnknownNetworkError(
            f"network {name!r} is not registered; registered networks: {', '.join(NETWORKS)} "
            "(medseg.networks.registry.NETWORKS)"
        )
    return NETWORKS[name]


def variant_files(name: str, train_config: str | Path) -> list[str]:
    """The config files that train ``name``: the bundle's ``train.json``, then the network's override file.

    Args:
        name: a registered network name.
        train_config: the bundle's ``configs/train.json``.

    Returns:
        paths for ``--config_file`` (a list of one file for a bundle's own network).

    Raises:
        UnknownNetworkError: ``name`` is not registered.
        FileNotFoundError: the override file is missing from ``bundles/variants/``.
    """
    network = get_network(name)
    files = [str(train_config)]
    if network.variant is not None:
        path = variants_dir() / network.variant
        if not path.is_file():
            raise FileNotFoundError(f"{path}: override file of network {name!r} not found; restore bundles/variants/")
        files.append(str(path))
    return files
