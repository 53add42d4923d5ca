"""Inference helpers usable from bundle configs: test-time augmentation."""

from __future__ import annotations

from medseg.inference.tta import FlipTTAInferer

__all__ = ["FlipTTAInferer"]
