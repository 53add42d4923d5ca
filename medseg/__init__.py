"""medseg: a MONAI pipeline for 2D medical image segmentation.

The Python API is five verbs with plain arguments, the same the ``medseg`` commands run (see :mod:`medseg.api`)::

    import medseg

    medseg.plan("cardiac_unet", "data/cardiac", time_budget="10m")         # -> the plan, written to plans.json
    result = medseg.train("cardiac_unet", "data/cardiac", max_epochs=5)     # -> output_dir, checkpoint, best metric
    model = medseg.load_model("cardiac_unet", result["checkpoint"])         # -> torch.nn.Module in eval mode
    medseg.evaluate("my_masks", "data/cardiac/datalist.json", "report")     # -> summary of the written report
    medseg.predict("dist/cardiac_unet_v0.1.0.zip", "images", "masks")      # -> rows written, inputs skipped

Importing ``medseg`` is cheap: the verbs and subpackages (``medseg.networks``, ``medseg.metrics``, ...) import
torch, MONAI and MLflow only when they are used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__", "evaluate", "load_model", "plan", "predict", "train"]
_API = ("evaluate", "load_model", "plan", "predict", "train")


def __getattr__(name: str) -> Any:
    if name in _API:
        from medseg import api

        return getattr(api, name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("medseg")
        except PackageNotFoundError:  # running from a source tree that is not installed
            return "0+unknown"
    raise AttributeError(f"module 'medseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, "__version__"])
