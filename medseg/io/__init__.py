"""Reading the files medseg scores: label masks (PNG, NIfTI) matched to their case by file name; writing its small
JSON files atomically."""

from medseg.io.files import write_json
from medseg.io.masks import (
    GT_SUFFIXES,
    MASK_EXTENSIONS,
    PRED_SUFFIXES,
    MaskError,
    case_id_from_name,
    check_label_values,
    find_masks,
    read_mask,
)

__all__ = [
    "GT_SUFFIXES",
    "MASK_EXTENSIONS",
    "PRED_SUFFIXES",
    "MaskError",
    "case_id_from_name",
    "check_label_values",
    "find_masks",
    "read_mask",
    "write_json",
]
