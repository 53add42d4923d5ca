"""The conversion driver: splits, folds, stats, provenance, bad cases and atomic, deterministic writes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from data_prep.datalist import Case, assign_folds, assign_splits, convert
from data_prep.errors import DataPrepError

FAKE = "tests.data_prep.fake_source"


def _options(src, out, **kw):
    opts = dict(src=str(src), out=str(out), folds=None, val_ratio=0.2, test_ratio=0.1, seed=0, max_size=None,
                workers=1, skip_bad=False)
    opts.update(kw)
    return argparse.Namespace(**opts)


def _make_src(root: Path, n_groups=10, per_group=3, bad=(), interrupt=()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    k = 0
    for g in range(n_groups):
        for _ in range(per_group):
            body = "0 1 0\n1 1 0\n" if k % 2 else "0 0 0\n0 1 1\n"
            if k in bad:
                body = "BAD\n"
            if k in interrupt:
                body = "INTERRUPT\n"
            (root / f"g{g:02d}__c{k:03d}.txt").write_text(body)
            k += 1
    return root


def _cases(n_groups=30, per_group=(1, 4)):
    cases, k = [], 0
    for g in range(n_groups):
        for _ in range(per_group[0] + g % per_group[1]):
            cases.append(Case(case_id=f"c{k}", group_id=f"g{g}", inputs={}, stratum="ab"[g % 2]))
            k += 1
    return cases


def test_splits_keep_groups_together_and_follow_ratios():
    cases = _cases()
    split_of = assign_splits(cases, val_ratio=0.2, test_ratio=0.1, seed=3)
    split_of_group = {}
    for c in cases:
        assert split_of_group.setdefault(c.group, split_of[c.case_id]) == split_of[c.case_id], "a group was split"
    n = len(cases)
    share = {s: sum(v == s for v in split_of.values()) / n for s in ("training", "validation", "testing")}
    assert share["validation"] == pytest.approx(0.2, abs=0.08)
    assert share["testing"] == pytest.approx(0.1, abs=0.06)
    # both strata reach validation (stratification)
    assert {c.stratum for c in cases if split_of[c.case_id] == "validation"} == {"a", "b"}
    assert assign_splits(cases, 0.2, 0.1, seed=3) == split_of
    assert assign_splits(cases, 0.2, 0.1, seed=4) != split_of


def test_official_splits_are_kept_and_only_missing_ones_carved():
    cases = [Case(case_id=f"t{i}", group_id=f"t{i}", inputs={}, split="training") for i in range(20)]
    cases += [Case(case_id=f"x{i}", group_id=f"x{i}", inputs={}, split="testing") for i in range(5)]
    split_of = assign_splits(cases, val_ratio=0.25, test_ratio=0.5, seed=0)
    assert all(split_of[f"x{i}"] == "testing" for i in range(5))
    assert sum(s == "testing" for s in split_of.values()) == 5  # an official testing split: nothing carved
    assert sum(s == "validation" for s in split_of.values()) == 5


def test_folds_keep_groups_together_and_balance_counts():
    cases = _cases()
    fold_of = assign_folds(cases, folds=3, seed=0)
    per_group = {}
    for c in cases:
        assert per_group.setdefault(c.group, fold_of[c.case_id]) == fold_of[c.case_id]
    sizes = [sum(f == k for f in fold_of.values()) for k in range(3)]
    assert set(fold_of.values()) == {0, 1, 2}
    assert max(sizes) - min(sizes) <= 4


def test_convert_writes_a_decathlon_datalist_with_stats_and_provenance(tmp_path):
    from monai.data import load_decathlon_datalist

    src = _make_src(tmp_path / "src")
    out = tmp_path / "out"
    convert(FAKE, _options(src, out))
    datalist = json.loads((out / "datalist.json").read_text())
    assert set(datalist) >= {"name", "description", "modality", "labels", "training", "validation", "testing",
                             "source", "created_with"}
    items = [i for s in ("training", "validation", "testing") for i in datalist[s]]
    assert len(items) == 30
    for item in items:
        assert {"image", "label", "case_id", "group_id", "fold"} <= set(item)
        assert not any(k.startswith("_") for k in item)
        assert not Path(item["image"]).is_absolute()
    assert {i["fold"] for i in datalist["training"]} == {0, 1, 2}
    assert {i["fold"] for i in datalist["validation"] + datalist["testing"]} == {-1}
    loaded = load_decathlon_datalist(str(out / "datalist.json"), data_list_key="training")
    assert all(Path(i["image"]).is_file() and Path(i["label"]).is_file() for i in loaded)

    stats = json.loads((out / "stats.json").read_text())
    train_pixels = stats["class_frequency"]["training"]["pixels"]
    assert sum(train_pixels.values()) == 6 * len(datalist["training"])
    assert stats["counts"]["training"]["items"] == len(datalist["training"])
    assert stats["image_size"]["min"] == [2, 3]
    provenance = json.loads((out / "provenance.json").read_text())
    import hashlib

    first = provenance["cases"]["c000"][0]
    assert first["sha256"] == hashlib.sha256((src / first["path"]).read_bytes()).hexdigest()


def test_convert_is_byte_for_byte_deterministic_and_workers_agree(tmp_path):
    src = _make_src(tmp_path / "src")
    convert(FAKE, _options(src, tmp_path / "a"))
    convert(FAKE, _options(src, tmp_path / "b", workers=2))
    for name in ("datalist.json", "stats.json", "images/c004.png", "labels/c004.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_bad_case_stops_the_run_and_writes_nothing(tmp_path):
    src = _make_src(tmp_path / "src", bad=(7,))
    out = tmp_path / "out"
    with pytest.raises(DataPrepError, match="c007.txt: this case is bad"):
        convert(FAKE, _options(src, out))
    assert not out.exists()
    assert not list(tmp_path.glob(".out.*")), "staging folder left behind"


def test_skip_bad_lists_bad_cases_and_writes_the_rest(tmp_path):
    src = _make_src(tmp_path / "src", bad=(1, 7))
    out = tmp_path / "out"
    datalist = convert(FAKE, _options(src, out, skip_bad=True))
    assert sum(len(datalist[s]) for s in ("training", "validation", "testing")) == 28
    bad = json.loads((out / "bad_cases.json").read_text())
    assert sorted(b["case_id"] for b in bad) == ["c001", "c007"]
    assert all("this case is bad" in b["problem"] for b in bad)


def test_duplicate_case_ids_are_refused(tmp_path):
    src = _make_src(tmp_path / "src", n_groups=2)
    (src / "g09__c001.txt").write_text("0 1\n")
    with pytest.raises(DataPrepError, match="duplicate case id 'c001'"):
        convert(FAKE, _options(src, tmp_path / "out"))
    datalist = convert(FAKE, _options(src, tmp_path / "out", skip_bad=True))
    assert "c001" not in {i["case_id"] for s in ("training", "validation", "testing") for i in datalist[s]}


def test_an_interrupted_rerun_keeps_the_previous_output(tmp_path):
    src = _make_src(tmp_path / "src")
    out = tmp_path / "out"
    convert(FAKE, _options(src, out))
    before = (out / "datalist.json").read_bytes()
    (src / "g09__c029.txt").write_text("INTERRUPT\n")
    with pytest.raises(KeyboardInterrupt):
        convert(FAKE, _options(src, out))
    assert (out / "datalist.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_rerun_over_existing_output_replaces_it(tmp_path):
    src = _make_src(tmp_path / "src")
    out = tmp_path / "out"
    convert(FAKE, _options(src, out))
    (src / "g00__c000.txt").unlink()  # a case gone since: its derived files must go too
    convert(FAKE, _options(src, out, seed=1))
    assert not (out / "images" / "c000.png").exists()
    assert json.loads((out / "datalist.json").read_text())["created_with"]["options"]["seed"] == 1


def test_a_user_file_inside_an_earlier_output_is_never_deleted(tmp_path):
    src = _make_src(tmp_path / "src")
    out = tmp_path / "out"
    convert(FAKE, _options(src, out))
    (out / "images" / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(DataPrepError, match="did not write: images/notes.txt"):
        convert(FAKE, _options(src, out, seed=1))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_foreign_output_folder_is_refused(tmp_path):
    src = _make_src(tmp_path / "src")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(DataPrepError, match="not a data_prep output"):
        convert(FAKE, _options(src, out))
    assert (out / "thesis.docx").read_text() == "precious"


def test_empty_or_missing_source_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataPrepError, match="no fake cases found"):
        convert(FAKE, _options(tmp_path / "empty", tmp_path / "out"))
    with pytest.raises(DataPrepError, match="source folder not found"):
        convert(FAKE, _options(tmp_path / "nope", tmp_path / "out"))


def test_small_strata_still_give_a_validation_split():
    # five strata of two groups each: rounding every stratum on its own would give no validation case at all
    cases = [Case(case_id=f"c{k}", group_id=f"g{k}", inputs={}, stratum=f"s{k // 2}") for k in range(10)]
    split_of = assign_splits(cases, val_ratio=0.2, test_ratio=0.0, seed=0)
    assert sum(s == "validation" for s in split_of.values()) == 2
