"""Reading the datalists that ``data_prep`` writes."""

from medseg.data.datalist import DatalistError, load_datalist, read_datalist

__all__ = ["DatalistError", "load_datalist", "read_datalist"]
