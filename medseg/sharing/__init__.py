"""Sharing trained bundles: safe loading (``check``, ``archive``), packaging (``package``, ``model_card``) and
inference on a colleague's images (``predict``).

A bundle received from someone else is code (MONAI configs can import and run anything), so everything here
checks a bundle before running it; see ``docs/sharing.md``.
"""

from medseg.sharing.errors import SharingError

__all__ = ["SharingError"]
