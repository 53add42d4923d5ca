"""Check a bundle's ``spatial_size`` against its network before any data is read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medseg.bundle.errors import BundleInputError


def check_spatial_size(spatial_size: Sequence[int], network: Any, name: str = "spatial_size") -> list[int]:
    """Check that every spatial size is a positive multiple of the network's downsampling factor.

    Args:
        spatial_size: the config's ``spatial_size`` (e.g. ``[96, 96]``).
        network: the bundle's network.
        name: the config id, for the message.

    Returns:
        ``spatial_size`` as a list, so a config may use the result.

    Raises:
        BundleInputError: a size is not a multiple of the factor (the message proposes the nearest ones).
    """
    from medseg.networks import size_divisor

    try:
        k = size_divisor(network)
    except TypeError:  # a network size_divisor does not know: nothing to check
        return list(spatial_size)
    bad = [s for s in spatial_size if int(s) <= 0 or int(s) % k]
    if bad:
        lower = [max(k, int(s) // k * k) for s in spatial_size]
        upper = [(int(s) + k - 1) // k * k for s in spatial_size]
        raise BundleInputError(
            f"{name} {list(spatial_size)} must be multiples of {k} for this {type(network).__name__}; "
            f"use e.g. --{name} \"{lower}\" or \"{upper}\""
        )
    return list(spatial_size)
