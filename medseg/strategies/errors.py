"""The error every strategy raises on bad input, before any training starts.

It is a :class:`medseg.bundle.BundleInputError` (a ``SystemExit``), so raised inside a bundle run (a handler or an
expression of an override file) it passes MONAI's ``except Exception`` wrappers and ``python -m monai.bundle run``
ends with exit status 2 and just the message; the ``medseg`` commands catch it, print it and exit 2.
"""

from __future__ import annotations

from medseg.bundle.errors import BundleInputError


class StrategyError(BundleInputError):
    """A strategy was asked for something that cannot work; the message names the input and the fix."""
