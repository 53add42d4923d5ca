"""A minimal converter used to test the driver in data_prep/datalist.py on its own.

Source layout: ``SRC/<group>__<case>.txt`` holding a small integer grid; a line ``BAD`` makes the case fail and
``INTERRUPT`` raises KeyboardInterrupt (a user's Ctrl-C); ``SLEEP`` waits 60 s (a run to kill or interrupt).
"""

from pathlib import Path

import numpy as np

from data_prep.datalist import Case
from data_prep.errors import DataPrepError
from data_prep.imageio import write_png

NAME = "fake"
DESCRIPTION = "Fake source for driver tests."
MODALITY = {"0": "test"}
LABELS = {"0": "background", "1": "thing"}


def find_cases(src: Path, options) -> list[Case]:
    cases = []
    for path in sorted(src.glob("*.txt")):
        group, case = path.stem.split("__")
        stratum = "odd" if int(case[1:]) % 2 else "even"
        cases.append(Case(case_id=case, group_id=group, inputs={"image": str(path)}, stratum=stratum))
    return cases


def convert_case(case: Case, out: Path, options) -> list[dict]:
    text = Path(case.inputs["image"]).read_text()
    if "SLEEP" in text:
        import time

        time.sleep(60)
    if "INTERRUPT" in text:
        raise KeyboardInterrupt
    if "BAD" in text:
        raise DataPrepError(case.inputs["image"], "this case is bad", "remove it")
    grid = np.array([[int(v) for v in line.split()] for line in text.splitlines()], dtype=np.uint8)
    write_png(grid * 100, out / "images" / f"{case.case_id}.png")
    write_png(grid, out / "labels" / f"{case.case_id}.png")
    counts = {int(v): int(c) for v, c in zip(*np.unique(grid, return_counts=True), strict=True)}
    return [{"image": f"images/{case.case_id}.png", "label": f"labels/{case.case_id}.png",
             "_label_counts": counts, "_size": grid.shape}]
