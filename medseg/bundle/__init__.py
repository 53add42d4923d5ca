"""Helpers that bundle configs call (``$medseg.bundle.load_datalist(...)``), with errors a user can act on.

Everything here ends a run with :class:`BundleInputError` (message only, exit status 2) on bad input.
"""

from medseg.bundle.checkpoint import StateDictWithout, checkpoint_file, load_checkpoint_into
from medseg.bundle.datalist import list_images, load_datalist, output_extension, training_cases
from medseg.bundle.errors import BundleInputError, InputCheckError, Interrupted, find_input_error
from medseg.bundle.overrides import (
    check_config_files,
    check_override_ids,
    check_overrides,
    check_run_settings,
)
from medseg.bundle.paths import (
    available_bundles,
    bundle_root,
    find_bundle,
    installed_bundles_dir,
    latest_checkpoint,
    run_dir,
    shared_file,
    workspace,
)
from medseg.bundle.sizes import check_spatial_size
from medseg.bundle.weights import class_weights_from_stats


def __getattr__(name: str):
    # CheckedCacheDataset imports MONAI's data module (and torch): only when a config names it, so that
    # importing medseg.bundle (errors, paths) stays cheap for the command line
    if name == "CheckedCacheDataset":
        from medseg.bundle.dataset import CheckedCacheDataset

        return CheckedCacheDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BundleInputError",
    "CheckedCacheDataset",
    "StateDictWithout",
    "InputCheckError",
    "Interrupted",
    "check_config_files",
    "check_override_ids",
    "check_overrides",
    "check_run_settings",
    "available_bundles",
    "bundle_root",
    "find_bundle",
    "installed_bundles_dir",
    "latest_checkpoint",
    "run_dir",
    "shared_file",
    "workspace",
    "check_spatial_size",
    "class_weights_from_stats",
    "find_input_error",
    "list_images",
    "load_checkpoint_into",
    "checkpoint_file",
    "load_datalist",
    "output_extension",
    "training_cases",
]
