"""medseg.bundle.training_cases: what a run trains on, with and without the validation section."""

import json

import pytest

from medseg.bundle import BundleInputError, training_cases


@pytest.fixture
def datalist(tmp_path):
    sections = {"training": ["a", "b"], "validation": ["c"], "testing": ["d"]}
    for names in sections.values():
        for name in names:
            (tmp_path / f"{name}.png").write_bytes(b"")
            (tmp_path / f"{name}_mask.png").write_bytes(b"")
    listed = {s: [{"image": f"{n}.png", "label": f"{n}_mask.png"} for n in names] for s, names in sections.items()}
    listed["labels"] = {"0": "background", "1": "lesion"}
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(listed))
    return path


def _names(cases):
    return [case["image"].rsplit("/", 1)[-1] for case in cases]


def test_training_section_only_by_default(datalist):
    assert _names(training_cases(datalist)) == ["a.png", "b.png"]


def test_train_on_validation_adds_the_validation_cases_not_the_testing_ones(datalist):
    assert _names(training_cases(datalist, train_on_validation=True)) == ["a.png", "b.png", "c.png"]


def test_train_on_validation_needs_a_validation_section(datalist):
    listed = json.loads(datalist.read_text())
    del listed["validation"]
    datalist.write_text(json.dumps(listed))
    assert _names(training_cases(datalist)) == ["a.png", "b.png"]
    with pytest.raises(BundleInputError, match="validation"):
        training_cases(datalist, train_on_validation=True)


def test_train_on_validation_must_be_a_boolean(datalist):
    with pytest.raises(BundleInputError, match="--train_on_validation 'yes': must be true or false"):
        training_cases(datalist, train_on_validation="yes")
