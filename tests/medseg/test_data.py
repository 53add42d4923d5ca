"""medseg.data: reading datalists with errors that name the file."""

import json

import pytest

from medseg.data import DatalistError, load_datalist


def test_load_datalist_resolves_paths(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "datalist.json").write_text(json.dumps(
        {"labels": {"0": "bg"}, "training": [{"image": "a.png", "label": "a.png", "case_id": "a"}]}))
    items = load_datalist(tmp_path / "datalist.json", "training")
    assert items[0]["image"] == str((tmp_path / "a.png").resolve())
    assert items[0]["case_id"] == "a"


@pytest.mark.parametrize(
    "content, section, message",
    [
        (None, "training", "datalist not found"),
        ("{not json", "training", "not valid JSON"),
        ('{"training": []}', "training", "not a data_prep datalist"),
        ('{"labels": {}, "validation": []}', "training", "has no 'training' section"),
        ('{"labels": {}, "training": []}', "training", "section is empty"),
        ('{"labels": {}, "training": [{"image": "a.png"}]}', "training", "has no 'label'"),
    ],
)
def test_load_datalist_errors_name_the_file(tmp_path, content, section, message):
    path = tmp_path / "datalist.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatalistError, match=message) as err:
        load_datalist(path, section)
    assert str(path) in str(err.value)
