"""Synthetic datasets written in the exact on-disk layout of a real source.

Each module (``isic``, ``ham10000``, ...) defines ``generate(out: Path, n: int, seed: int) -> None``; the same seed
gives byte-identical files. They let the converters, bundles and tests run without the real data, which cannot be
redistributed with the project. :mod:`data_prep.phantoms.skin` holds the drawing helpers of the dermoscopy phantoms.
"""
