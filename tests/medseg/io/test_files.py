"""``medseg.io.write_json``: a JSON file is written whole or not at all."""

from __future__ import annotations

import json

import pytest

from medseg.io import write_json


def test_writes_makes_folders_and_replaces(tmp_path):
    path = tmp_path / "run" / "plans.json"
    assert write_json({"a": 1}, path) == path and json.loads(path.read_text()) == {"a": 1}
    write_json({"a": 2}, path, indent=4)
    assert json.loads(path.read_text()) == {"a": 2} and path.read_text().startswith('{\n    "a"')
    assert sorted(p.name for p in path.parent.iterdir()) == ["plans.json"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = write_json({"kept": True}, tmp_path / "postprocessing.json")
    with pytest.raises(TypeError):
        write_json({"bad": object()}, path)
    assert json.loads(path.read_text()) == {"kept": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["postprocessing.json"]
