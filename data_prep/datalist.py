"""The one datalist contract and the driver that every converter runs through.

A converter module (``data_prep/<source>.py``) says *what* a dataset holds; this module does the rest the
same way for every source: parallel conversion with a progress bar, grouped and stratified splits and
folds, class statistics, provenance, ``--skip_bad`` reports and an atomic, deterministic write.

A converter module defines:

* ``NAME``, ``DESCRIPTION``, ``MODALITY`` (``{"0": "MRI"}``) and ``LABELS`` (``{"0": "background", ...}``);
* ``find_cases(src: Path, options) -> list[Case]``: lists the cases, raising :class:`DataPrepError` for a
  folder that is empty or not laid out as the source is;
* ``convert_case(case: Case, out: Path, options) -> list[dict]``: writes the case's derived files under
  ``out`` and returns its datalist items (paths relative to ``out``). Items may carry the private keys
  ``_label_counts`` (``{label value: pixel count}``) and ``_size`` (``(height, width)``) for ``stats.json``;
* optionally ``add_arguments(parser)`` for source-specific options;
* optionally ``identifying_values(src, cases, options) -> set[str]``: identifying values (PatientName, PatientID,
  ...) of the source's DICOM files, kept out of every output and log line (see :mod:`data_prep.deid`); it may
  also refuse the source before any work (a modality the converter does not expect).

The datalist (``datalist.json``) is Decathlon-style, so ``monai.data.load_decathlon_datalist`` reads it:
top-level ``name``, ``description``, ``modality``, ``labels``, ``training``, ``validation``, ``testing``,
``source`` and ``created_with``; each item has ``image``, ``label`` (when there is ground truth),
``case_id``, ``group_id`` and ``fold`` (0..K-1 in the training split; -1 for validation and testing items,
which are not in the cross-validation pool), and where known ``spacing``, ``slice_thickness`` (distance
between slice centres, mm), ``phase``, ``slice``, ``class`` and ``annotated``.
"""

from __future__ import annotations

import errno
import functools
import importlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep import outdir
from data_prep.deid import Scrubber
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


def _ignore_sigint() -> None:
    """Pool initializer: Ctrl-C is the main process's to handle (one line, no traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _convert_one(module_name: str, out: Path, options: Any, case: Case):
    """Worker: convert one case; returns (items, provenance, None) or (None, None, error dict).

    An error dict with ``"output": True`` is a failure to write the output (disk full, read-only): never a bad case.
    """
    module = importlib.import_module(module_name)
    try:
        items = module.convert_case(case, out, options)
        provenance = [
            {"role": role, "path": _relative_to_src(path, options), "sha256": sha256_of(path)}
            for role, path in case.inputs.items()
        ]
        return items, provenance, None
    except DataPrepError as exc:
        return None, None, {"case_id": case.case_id, "file": exc.path, "problem": exc.problem, "fix": exc.fix}
    except OSError as exc:
        if exc.errno in outdir.NO_SPACE or _is_under(exc.filename, out) or _is_under(exc.filename2, out):
            return None, None, {"case_id": case.case_id, "output": True, "errno": exc.errno,
                                "strerror": exc.strerror or str(exc)}
        file = exc.filename or case.first_input
        return None, None, {"case_id": case.case_id, "file": str(file),
                            "problem": f"cannot be read ({exc.strerror or exc})", "fix": "check the file"}
    except Exception as exc:  # a reader failing in a way the converter did not foresee
        problem = f"{type(exc).__name__}: {exc}"
        return None, None, {"case_id": case.case_id, "file": case.first_input, "problem": problem, "fix": ""}


def _is_under(filename, folder: Path) -> bool:
    if not filename:
        return False
    try:
        return Path(os.path.abspath(os.fsdecode(filename))).is_relative_to(folder)
    except (TypeError, ValueError):
        return False


def _relative_to_src(path: str, options: Any) -> str:
    """``path`` relative to --src (POSIX), through symlinks; the path as given when it lies elsewhere."""
    for base, target in ((os.path.abspath(options.src), os.path.abspath(path)),
                         (os.path.realpath(options.src), os.path.realpath(path))):
        if target.startswith(base + os.sep):
            return Path(os.path.relpath(target, base)).as_posix()
    return str(path)


def validate_options(options: Any) -> None:
    """Check every option with a range before any work starts; one line naming the option.

    Raises:
        DataPrepError: an option out of its range.
    """
    def bad(option: str, value, rule: str):
        raise DataPrepError(None, f"{option} {value}: {rule}", f"pass a valid {option}")

    val, test = getattr(options, "val_ratio", 0.0), getattr(options, "test_ratio", 0.0)
    for option, value in (("--val_ratio", val), ("--test_ratio", test)):
        if not (0.0 <= value < 1.0):  # also refuses NaN
            bad(option, value, "must be at least 0 and below 1")
    if val + test >= 1.0:
        bad("--val_ratio", val, f"plus --test_ratio {test} must stay below 1 (nothing would be left for training)")
    folds = getattr(options, "folds", None)
    if folds is not None and folds < 2:
        bad("--folds", folds, "must be at least 2 (and at most the number of training groups)")
    max_size = getattr(options, "max_size", None)
    if max_size is not None and max_size < 1:
        bad("--max_size", max_size, "must be a positive number of pixels")
    workers = getattr(options, "workers", 1)
    if workers is None or workers < 1:
        bad("--workers", workers, "must be at least 1")
    if getattr(options, "seed", 0) < 0:
        bad("--seed", options.seed, "must be 0 or more")


DEFAULT_FOLDS = 3


def _training_groups(cases: list[Case], options: Any) -> int:
    split_of = assign_splits(cases, options.val_ratio, options.test_ratio, options.seed)
    return len({c.group for c in cases if split_of[c.case_id] == "training"})


def _check_folds(cases: list[Case], options: Any, after_skipping: bool = False) -> None:
    """Refuse an explicit ``--folds`` above the number of training groups (the default adapts instead)."""
    folds = getattr(options, "folds", None)
    if folds is None:
        return
    groups = _training_groups(cases, options)
    if folds > groups:
        when = " after leaving out the bad cases" if after_skipping else ""
        raise DataPrepError(None, f"--folds {folds}: the training split has only {groups} groups{when}",
                            f"pass --folds between 2 and {groups}" if groups >= 2
                            else "lower --val_ratio/--test_ratio or add cases")


def _effective_folds(train_groups: int, options: Any) -> int:
    """``--folds``, or the default (3) lowered to the number of training groups with a warning."""
    folds = getattr(options, "folds", None)
    if folds is not None:
        return folds
    if train_groups >= DEFAULT_FOLDS:
        return DEFAULT_FOLDS
    used = max(1, train_groups)
    print(f"warning: the training split has only {train_groups} group(s): using {used} fold(s) instead of "
          f"{DEFAULT_FOLDS}" + ("; cross-validation needs at least 2" if used < 2 else ""), file=sys.stderr)
    return used


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

    Options are checked first (:func:`validate_options`), then the folders (:mod:`data_prep.outdir`: ``--out``
    must not overlap ``--src`` and may only hold data_prep's own files). Everything is written into a staging
    folder beside ``options.out`` that replaces it only when the conversion succeeded, so an interrupted or
    failed run leaves no half-written output.

    Args:
        module_name: the converter module, e.g. ``data_prep.isic``.
        options: parsed options with ``src``, ``out``, ``folds``, ``val_ratio``, ``test_ratio``, ``seed``,
            ``max_size``, ``workers`` and ``skip_bad``.

    Returns:
        the datalist written.

    Raises:
        DataPrepError: a bad input (without ``--skip_bad``), a bad option or a bad folder.
        OutputError: the output cannot be written (disk full, read-only folder).
    """
    started = time.perf_counter()
    validate_options(options)
    module = importlib.import_module(module_name)
    src, out = Path(options.src), Path(options.out)
    if not src.is_dir():
        raise DataPrepError(src, "source folder not found", "pass the dataset's root folder with --src")
    outdir.check_src_out(src, out)
    out = outdir.resolve(out, "--out")
    outdir.check_replaceable(out)
    try:
        cases = module.find_cases(src, options)
    except RecursionError as exc:
        raise DataPrepError(src, "holds a symlink loop", "remove the looping symlink") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataPrepError(exc.filename or src, "is a symlink loop", "remove the looping symlink") from exc
        raise DataPrepError(exc.filename or src, f"cannot be read ({exc.strerror})", "check --src") from exc
    if not cases:
        raise DataPrepError(src, f"no {module.NAME} cases found", "check --src and the expected layout in README")
    identifying = getattr(module, "identifying_values", None)
    scrub = Scrubber(identifying(src, cases, options) if identifying else set())
    pseudonym_of = {c.case_id: c.group for c in cases}

    bad: list[dict] = []
    seen: dict[str, Case] = {}
    duplicates: set[str] = set()
    for c in cases:
        if c.case_id in seen:
            duplicates.add(c.case_id)
            if not options.skip_bad:
                raise DataPrepError(
                    scrub.text(c.first_input),
                    f"duplicate case id {c.case_id!r} (also {scrub.text(seen[c.case_id].first_input)})",
                    "remove one of the two files or use --skip_bad",
                )
        seen[c.case_id] = c
    if duplicates:
        bad += [
            {"case_id": c.case_id, "file": c.first_input, "problem": "duplicate case id", "fix": ""}
            for c in cases
            if c.case_id in duplicates
        ]
        cases = [c for c in cases if c.case_id not in duplicates]
    _check_folds(cases, options)

    outdir.clean_stale(out)
    staging = outdir.make_staging(out)
    try:
        items_of, provenance = _run_workers(module_name, cases, staging, options, bad, scrub, pseudonym_of)
        datalist, items_meta = _build_datalist(module, cases, items_of, options)
        provenance = {
            cid: [{**p, "path": scrub.path(p["path"], pseudonym_of[cid])} for p in records]
            for cid, records in provenance.items()
        }
        bad = [_scrubbed(b, scrub, pseudonym_of, options) for b in bad]
        try:
            write_json(datalist, staging / DATALIST_NAME)
            write_json(_stats(datalist, items_meta, module.LABELS, len(bad)), staging / STATS_NAME)
            write_json({"src": scrub.text(str(src)), "cases": provenance}, staging / PROVENANCE_NAME)
            if bad:
                write_json(bad, staging / BAD_CASES_NAME)
            outdir.write_manifest(staging)
        except OSError as exc:
            raise outdir.output_error(exc, out) from exc
        outdir.swap_in(staging, out)
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


def _scrubbed(error: dict, scrub: Scrubber, pseudonym_of: dict[str, str], options: Any, relative=True) -> dict:
    """A bad-case record with no identifying value, its file relative to --src (or as given: ``relative=False``)."""
    pseudonym = pseudonym_of.get(error["case_id"], "")
    record = dict(error)
    if record.get("file"):
        file = _relative_to_src(record["file"], options) if relative else record["file"]
        record["file"] = scrub.path(file, pseudonym)
    record["problem"] = scrub.text(record.get("problem"), pseudonym)
    record["fix"] = scrub.text(record.get("fix"), pseudonym)
    return record


def _run_workers(module_name, cases, staging, options, bad, scrub, pseudonym_of):
    from tqdm import tqdm

    work = functools.partial(_convert_one, module_name, staging, options)
    workers = max(1, int(getattr(options, "workers", 1) or 1))
    items_of: dict[str, list[dict]] = {}
    provenance: dict[str, list[dict]] = {}
    bar = tqdm(total=len(cases), desc=f"converting {module_name.split('.')[-1]}", unit="case",
               disable=len(cases) <= 5 or not sys.stderr.isatty(), file=sys.stderr, leave=False)
    pool = (multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_sigint)
            if workers > 1 else None)
    try:
        results = pool.imap(work, cases, chunksize=4) if pool else map(work, cases)
        for case, (items, prov, error) in zip(cases, results, strict=True):
            bar.update()
            if error is not None and error.get("output"):
                exc = OSError(error["errno"], error["strerror"])
                raise outdir.output_error(exc, Path(options.out).resolve())
            if error is not None:
                if not options.skip_bad:
                    shown = _scrubbed(error, scrub, pseudonym_of, options, relative=False)
                    raise DataPrepError(shown["file"], shown["problem"], shown["fix"] or "or use --skip_bad")
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
    if len(converted) < len(cases):
        _check_folds(converted, options, after_skipping=True)
    split_of = assign_splits(converted, options.val_ratio, options.test_ratio, options.seed)
    train_cases = [c for c in converted if split_of[c.case_id] == "training"]
    folds = _effective_folds(len({c.group for c in train_cases}), options)
    fold_of = assign_folds(train_cases, folds, options.seed)
    datalist: dict[str, Any] = {
        "name": module.NAME,
        "description": module.DESCRIPTION,
        "modality": module.MODALITY,
        "labels": module.LABELS,
        "source": getattr(module, "SOURCE", module.NAME),
        "created_with": {"converter": module.__name__, "version": _version(),
                         "options": {**_options_record(options), "folds": folds}},
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


