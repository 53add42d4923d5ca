"""MONAI's ``CacheDataset`` with bad input reported as :class:`BundleInputError`."""

from __future__ import annotations

from typing import Any

from monai.data import CacheDataset

from medseg.bundle.errors import BundleInputError, find_input_error


class CheckedCacheDataset(CacheDataset):
    """``monai.data.CacheDataset`` whose caching ends the run cleanly when a check fails.

    Caching runs the deterministic transforms (and medseg's label and channel checks) in a thread pool
    while the config is being instantiated, where MONAI would wrap an error in ``RuntimeError: applying
    transform ...`` and then ``RuntimeError: Failed to instantiate ...``. Here every item is still
    cached (so the pool finishes normally), the input errors are collected, and the run ends with
    :class:`BundleInputError` naming the first bad file and how many there are. Other errors propagate.

    Args:
        args: as for ``monai.data.CacheDataset``.
        kwargs: as for ``monai.data.CacheDataset``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._input_errors: list[str] = []
        super().__init__(*args, **kwargs)

    def _load_cache_item(self, idx: int) -> Any:
        try:
            return super()._load_cache_item(idx)
        except Exception as exc:
            message = find_input_error(exc)
            if message is None:
                raise
            self._input_errors.append(message)
            return None

    def set_data(self, data: Any) -> None:
        """Replace the data and refill the cache (called by ``__init__``), reporting bad input clearly.

        Raises:
            BundleInputError: a check failed on at least one item.
        """
        self._input_errors = []
        super().set_data(data)
        if self._input_errors:
            more = len(self._input_errors) - 1
            raise BundleInputError(self._input_errors[0] + (f" (and {more} more bad item(s))" if more else ""))
