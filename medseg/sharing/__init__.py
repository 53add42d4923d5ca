"""Sharing trained models without sharing code.

``package`` writes a data-only ``manifest.json`` (``manifest``, ``registry``), safetensors weights, the sha256 of
every file and an optional Ed25519 signature (``signing``), beside the MONAI bundle and a model card
(``model_card``). ``check`` verifies a package and lists what its MONAI configs would run; ``archive`` extracts
zips within limits. ``predict`` builds the model from the manifest and medseg's own code (``shared_model``,
``tta``, ``postprocess``, ``runtime``), never from a received config, and writes masks and DICOM SEGs
(``inputs``, ``dicom_seg``). See ``docs/sharing.md``.
"""

from medseg.sharing.archive import ExtractionLimits
from medseg.sharing.errors import SharingError
from medseg.sharing.manifest import MANIFEST_NAME, SIGNATURE_NAME, read_manifest, validate_manifest
from medseg.sharing.registry import NETWORKS, STEPS, build_network, build_preprocessing

__all__ = [
    "MANIFEST_NAME",
    "NETWORKS",
    "SIGNATURE_NAME",
    "STEPS",
    "ExtractionLimits",
    "SharingError",
    "build_network",
    "build_preprocessing",
    "read_manifest",
    "validate_manifest",
]
