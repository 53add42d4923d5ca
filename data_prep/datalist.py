"""The one datalist contract and the driver that every converter runs through.

A converter module (``data_prep/<source>.py``) says *what* a dataset holds; this module does the rest the
same way for every source: parallel conversion with a progress bar, grouped and stratified splits and
folds, class statistics, provenance, ``--skip-bad`` reports and an atomic, deterministic write.

A converter module defines:

* ``NAME``, ``DESCRIPTION``, ``MODALITY`` (``{"0": "MRI"}``) and ``LABELS`` (``{"0": "background", ...}``);
* ``find_cases(src: Path, options) -> list[Case]``: lists the cases, raising :class:`DataPrepError` for a
  folder that is empty or not laid out as the source is;
* ``convert_case(case: Case, out: Path, options) -> list[dict]``: writes the case's derived files under
  ``out`` and returns its datalist items (paths relative to ``out``). Items may carry the private keys
  ``_label_counts`` (``{label value: pixel count}``) and ``_size`` (``(height, width)``) for ``stats.json``;
* optionally ``add_arguments(parser)`` for source-specific options.

The datalist (``datalist.json``) is Decathlon-style, so ``monai.data.load_decathlon_datalist`` reads it:
top-level ``name``, ``description``, ``modality``, ``labels``, ``training``, ``validation``, ``testing``,
``source`` and ``created_with``; each item has ``image``, ``label`` (when there is ground truth),
``case_id``, ``group_id`` and ``fold`` (0..K-1 in the training split; -1 for validation and testing items,
which are not in the cross-validation pool), and where known ``spacing``, ``phase``, ``slice``, ``class``
and ``annotated``.
"""

from __future__ import annotations

import functools
import importlib
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.errors import DataPrepError
from data_prep.imageio import sha256_of

SPLITS = ("training", "validation", "testing")
NOT_IN_CV_POOL = -1
DATALIST_NAME = "datalist.json"
STATS_NAME = "stats.json"
PROVENANCE_NAME = "provenance.json"
BAD_CASES_NAME = "bad_cases.json"


@dataclass(frozen=True)
class Case:
    """One unit of conversion: everything that must not be split (an image, a patient's frame, ...).

    Args:
        case_id: unique, pseudonymous id of the case.
        group_id: what must stay in one split and fold (patient, lesion). Defaults to ``case_id``.
        inputs: role -> source file path (``image``, ``label``, ...); their sha256 go into provenance.
        split: the source's official split (``training``, ``validation``, ``testing``) or None.
        stratum: the class to stratify splits by (e.g. the HAM10000 dx, the ACDC group), or None.
        extra: anything else the converter needs (picklable).
    """

    case_id: str
    inputs: dict[str, str]
    group_id: str = ""
    split: str | None = None
    stratum: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.group_id or self.case_id

    @property
    def first_input(self) -> str:
        return next(iter(self.inputs.values()), self.case_id)


def _atomic_write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def write_json(obj: Any, path: str | Path) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    _atomic_write_json(obj, Path(path))


def assign_splits(cases: list[Case], val_ratio: float, test_ratio: float, seed: int) -> dict[str, str]:
    """Place every case in a split, keeping groups together and strata balanced.

    Official splits are kept. Testing is carved from the unassigned and training cases only when the
    source has no official testing split, and validation likewise; whatever is left is training.

    Args:
        cases: all cases.
        val_ratio: share of cases for validation when the source has no validation split.
        test_ratio: share of cases for testing when the source has no testing split.
        seed: seed of the shuffle; the same seed gives the same splits.

    Returns:
        case_id -> split name.
    """
    split_of = {c.case_id: c.split for c in cases}
    official = {c.split for c in cases if c.split}
    for name, ratio in (("testing", test_ratio), ("validation", val_ratio)):
        if name in official or ratio <= 0:
            continue
        free = [c for c in cases if split_of[c.case_id] in (None, "training")]
        for group in _pick_groups(free, ratio, seed):
            for c in free:
                if c.group == group:
                    split_of[c.case_id] = name
    return {cid: (s or "training") for cid, s in split_of.items()}


def _groups_by_stratum(cases: list[Case]) -> dict[str, list[tuple[str, int]]]:
    """stratum -> sorted [(group, n cases)], the stratum of a group being its most common one."""
    members: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        members[c.group].append(c)
    strata: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for group in sorted(members):
        counts = Counter(c.stratum or "" for c in members[group])
        stratum = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        strata[stratum].append((group, len(members[group])))
    return strata


def _pick_groups(cases: list[Case], ratio: float, seed: int) -> set[str]:
    picked: set[str] = set()
    carry = 0.0  # what earlier strata took less (or more) than their share: small strata round to zero otherwise
    for stratum, groups in sorted(_groups_by_stratum(cases).items()):
        rng = random.Random(f"{seed}:{stratum}")
        order = groups[:]
        rng.shuffle(order)
        target = ratio * sum(n for _, n in groups) + carry
        taken = 0
        for group, n in order:
            # take a group while it brings the count closer to the target
            if abs(taken + n - target) < abs(taken - target):
                picked.add(group)
                taken += n
        carry = target - taken
    return picked


def assign_folds(cases: list[Case], folds: int, seed: int) -> dict[str, int]:
    """Give each group of ``cases`` a fold in 0..folds-1, balancing case counts within every stratum."""
    fold_of: dict[str, int] = {}
    size = [0] * folds
    for stratum, groups in sorted(_groups_by_stratum(cases).items()):
        rng = random.Random(f"{seed}:fold:{stratum}")
        order = groups[:]
        rng.shuffle(order)
        order.sort(key=lambda g: -g[1])  # big groups first, then fill the gaps (stable: keeps the shuffle)
        per_stratum = [0] * folds
        for group, n in order:
            k = min(range(folds), key=lambda i: (per_stratum[i], size[i], i))
            fold_of[group] = k
            per_stratum[k] += n
            size[k] += n
    return {c.case_id: fold_of[c.group] for c in cases}


def _convert_one(module_name: str, out: Path, options: Any, case: Case):
    """Worker: convert one case; returns (items, provenance, None) or (None, None, error dict)."""
    module = importlib.import_module(module_name)
    try:
        items = module.convert_case(case, out, options)
        provenance = [
            {"role": role, "path": _display_path(path, options), "sha256": sha256_of(path)}
            for role, path in case.inputs.items()
        ]
        return items, provenance, None
    except DataPrepError as exc:
        return None, None, {"case_id": case.case_id, "file": exc.path, "problem": exc.problem, "fix": exc.fix}
    except Exception as exc:  # a reader failing in a way the converter did not foresee
        problem = f"{type(exc).__name__}: {exc}"
        return None, None, {"case_id": case.case_id, "file": case.first_input, "problem": problem, "fix": ""}


@functools.lru_cache(maxsize=8)
def _resolved(folder: str) -> Path:
    return Path(folder).resolve()


def _display_path(path: str, options: Any) -> str:
    try:
        return str(Path(path).resolve().relative_to(_resolved(str(options.src))))
    except ValueError:
        return str(path)


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / DATALIST_NAME).exists())):
        raise DataPrepError(
            out,
            "exists and is not a data_prep output (it has no datalist.json)",
            "choose an empty or new --out folder",
        )


def _stats(datalist: dict, items_meta: dict[str, dict], labels: dict[str, str], skipped: int) -> dict:
    stats: dict[str, Any] = {"counts": {}, "image_size": {}, "class_frequency": {}, "skipped": skipped}
    sizes: Counter = Counter()
    for split in SPLITS:
        items = datalist[split]
        stats["counts"][split] = {"items": len(items), "groups": len({i["group_id"] for i in items})}
        pixels = {k: 0 for k in labels}
        with_class = {k: 0 for k in labels}
        for item in items:
            meta = items_meta[item["case_id"]]
            if meta.get("_size"):
                h, w = meta["_size"]
                sizes[f"{h}x{w}"] += 1
            for value, count in (meta.get("_label_counts") or {}).items():
                key = str(value)
                pixels[key] = pixels.get(key, 0) + int(count)
                with_class[key] = with_class.get(key, 0) + (1 if count else 0)
        total = sum(pixels.values())
        stats["class_frequency"][split] = {
            "pixels": pixels,
            "fraction": {k: (v / total if total else 0.0) for k, v in pixels.items()},
            "items_with_class": with_class,
        }
    if sizes:
        hw = [tuple(int(x) for x in s.split("x")) for s in sizes]
        stats["image_size"] = {
            "min": [min(h for h, _ in hw), min(w for _, w in hw)],
            "max": [max(h for h, _ in hw), max(w for _, w in hw)],
            "counts": dict(sorted(sizes.items())),
        }
    return stats


def convert(module_name: str, options: Any) -> dict:
    """Run one converter end to end and write ``datalist.json``, ``stats.json`` and ``provenance.json``.

    Everything is written into a staging folder beside ``options.out`` that replaces it only when the
    conversion succeeded, so an interrupted or failed run leaves no half-written output.

    Args:
        module_name: the converter module, e.g. ``data_prep.isic``.
        options: parsed options with ``src``, ``out``, ``folds``, ``val_ratio``, ``test_ratio``, ``seed``,
            ``max_size``, ``workers`` and ``skip_bad``.

    Returns:
        the datalist written.

    Raises:
        DataPrepError: a bad input (without ``--skip-bad``) or a bad folder.
    """
    started = time.perf_counter()
    module = importlib.import_module(module_name)
    src, out = Path(options.src), Path(options.out)
    if not src.is_dir():
        raise DataPrepError(src, "source folder not found", "pass the dataset's root folder with --src")
    out = out.resolve()
    _check_out_dir(out)
    cases = module.find_cases(src, options)
    if not cases:
        raise DataPrepError(src, f"no {module.NAME} cases found", "check --src and the expected layout in README")

    bad: list[dict] = []
    seen: dict[str, Case] = {}
    duplicates: set[str] = set()
    for c in cases:
        if c.case_id in seen:
            duplicates.add(c.case_id)
            if not options.skip_bad:
                raise DataPrepError(
                    c.first_input,
                    f"duplicate case id {c.case_id!r} (also {seen[c.case_id].first_input})",
                    "remove one of the two files or use --skip-bad",
                )
        seen[c.case_id] = c
    if duplicates:
        bad += [
            {"case_id": c.case_id, "file": c.first_input, "problem": "duplicate case id", "fix": ""}
            for c in cases
            if c.case_id in duplicates
        ]
        cases = [c for c in cases if c.case_id not in duplicates]

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        items_of, provenance = _run_workers(module_name, cases, staging, options, bad)
        datalist, items_meta = _build_datalist(module, cases, items_of, options)
        write_json(datalist, staging / DATALIST_NAME)
        write_json(_stats(datalist, items_meta, module.LABELS, len(bad)), staging / STATS_NAME)
        write_json({"src": str(src), "cases": provenance}, staging / PROVENANCE_NAME)
        if bad:
            write_json(bad, staging / BAD_CASES_NAME)
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    counts = ", ".join(f"{len(datalist[s])} {s}" for s in SPLITS)
    skipped = f", {len(bad)} skipped (see {out / BAD_CASES_NAME})" if bad else ""
    print(
        f"{module.NAME}: {len(cases) - len({b['case_id'] for b in bad if b['case_id'] in seen})} cases -> "
        f"{counts}{skipped} in {time.perf_counter() - started:.1f}s; wrote {out / DATALIST_NAME}",
        file=sys.stderr,
    )
    return datalist


def _run_workers(module_name, cases, staging, options, bad):
    from tqdm import tqdm

    work = functools.partial(_convert_one, module_name, staging, options)
    workers = max(1, int(getattr(options, "workers", 1) or 1))
    items_of: dict[str, list[dict]] = {}
    provenance: dict[str, list[dict]] = {}
    bar = tqdm(total=len(cases), desc=f"converting {module_name.split('.')[-1]}", unit="case",
               disable=len(cases) <= 5, file=sys.stderr, leave=False)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(work, cases, chunksize=4) if pool else map(work, cases)
        for case, (items, prov, error) in zip(cases, results, strict=True):
            bar.update()
            if error is not None:
                if not options.skip_bad:
                    raise DataPrepError(error["file"], error["problem"], error["fix"] or "or use --skip-bad")
                bad.append(error)
                continue
            items_of[case.case_id] = items
            provenance[case.case_id] = prov
    finally:
        bar.close()
        if pool:
            pool.terminate()
            pool.join()
    return items_of, provenance


def _build_datalist(module, cases, items_of, options):
    converted = [c for c in cases if c.case_id in items_of]
    if not converted:
        raise DataPrepError(options.src, "every case was bad; nothing to write", "see the errors above")
    split_of = assign_splits(converted, options.val_ratio, options.test_ratio, options.seed)
    train_cases = [c for c in converted if split_of[c.case_id] == "training"]
    fold_of = assign_folds(train_cases, options.folds, options.seed) if options.folds > 0 else {}
    datalist: dict[str, Any] = {
        "name": module.NAME,
        "description": module.DESCRIPTION,
        "modality": module.MODALITY,
        "labels": module.LABELS,
        "source": getattr(module, "SOURCE", module.NAME),
        "created_with": {"converter": module.__name__, "version": _version(), "options": _options_record(options)},
        "training": [],
        "validation": [],
        "testing": [],
    }
    items_meta: dict[str, dict] = {}
    for case in converted:
        split = split_of[case.case_id]
        for item in items_of[case.case_id]:
            public = {k: v for k, v in item.items() if not k.startswith("_")}
            public.setdefault("case_id", case.case_id)
            public.setdefault("group_id", case.group)
            public["fold"] = fold_of.get(case.case_id, NOT_IN_CV_POOL)
            if public["case_id"] in items_meta:
                raise DataPrepError(case.first_input, f"duplicate item id {public['case_id']!r}")
            items_meta[public["case_id"]] = item
            datalist[split].append(public)
    for split in SPLITS:
        datalist[split].sort(key=lambda i: i["case_id"])
    return datalist, items_meta


def _options_record(options) -> dict:
    keep = ("folds", "val_ratio", "test_ratio", "seed", "max_size")
    return {k: getattr(options, k) for k in keep if hasattr(options, k)}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("medseg")
    except Exception:
        return "unknown"


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` with renames, so ``out`` is always either the old or the new output."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
