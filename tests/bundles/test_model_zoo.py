"""The MONAI model zoo's bundle checks, run offline on every bundle.

What the model zoo's CI verifies before it accepts a bundle: the file layout, the metadata against MONAI's official
schema (vendored: ``bundles/schema/meta_schema_20240725.json``), a version that the changelog records as its newest
entry, no committed file over 25 MB (weights that large are declared in ``large_files.yml``), and a network that
exports to TorchScript with ``monai.bundle ckpt_export`` and runs.
"""

from __future__ import annotations

import io
import json

import pytest

from tests.bundles.conftest import BUNDLE_DATA, BUNDLES_DIR, SCHEMA

OFFICIAL_SCHEMA = BUNDLES_DIR / "schema" / "meta_schema_20240725.json"
ZOO_FILE_LIMIT = 25 * 1000 * 1000  # bytes; the model zoo's limit for a committed file
REQUIRED_FILES = ("configs/metadata.json", "configs/inference.json", "configs/train.json", "configs/logging.conf",
                  "docs/README.md", "docs/data_license.txt", "LICENSE")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _network(bundle: str):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / bundle / "configs" / "inference.json"))
    parser.read_meta(str(BUNDLES_DIR / bundle / "configs" / "metadata.json"))
    return parser, parser.get_parsed_content("network_def")


@pytest.mark.parametrize("bundle", sorted(BUNDLE_DATA))
def test_layout_and_file_sizes(bundle):
    folder = BUNDLES_DIR / bundle
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    assert not missing, f"{bundle}: missing {missing}"
    too_large = [p for p in folder.rglob("*") if p.is_file() and p.stat().st_size > ZOO_FILE_LIMIT]
    assert not too_large, f"{bundle}: committed files over 25 MB: {too_large}"


@pytest.mark.parametrize("bundle", sorted(BUNDLE_DATA))
def test_metadata_official_schema_version_and_changelog(bundle):
    from monai.bundle import verify_metadata

    meta_file = BUNDLES_DIR / bundle / "configs" / "metadata.json"
    for schema in (OFFICIAL_SCHEMA, SCHEMA):  # verify_metadata raises on any violation; an existing file: no download
        verify_metadata(meta_file=str(meta_file), filepath=str(schema))
    metadata = json.loads(meta_file.read_text())
    assert metadata["schema"].endswith(OFFICIAL_SCHEMA.name)
    changelog = metadata["changelog"]
    assert metadata["version"] in changelog
    assert max(changelog, key=_version_key) == metadata["version"], "the newest changelog entry is not the version"


@pytest.mark.parametrize("bundle", sorted(BUNDLE_DATA))
def test_large_files_declared_where_weights_exceed_the_limit(bundle):
    import torch

    _, network = _network(bundle)
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    declared = BUNDLES_DIR / bundle / "large_files.yml"
    if buffer.tell() <= ZOO_FILE_LIMIT:
        assert not declared.exists(), f"{bundle}: weights of {buffer.tell() / 1e6:.1f} MB need no large_files.yml"
        return
    import yaml

    entries = yaml.safe_load(declared.read_text())["large_files"]
    assert [e["path"] for e in entries] == ["models/model.pt"]
    assert {"url", "hash_val", "hash_type"} <= set(entries[0])


@pytest.mark.parametrize("bundle", sorted(BUNDLE_DATA))
def test_torchscript_export_runs(bundle, tmp_path):
    import torch
    from monai.bundle import ckpt_export

    torch.set_num_threads(2)
    parser, network = _network(bundle)
    checkpoint = tmp_path / "model.pt"
    torch.save(network.state_dict(), checkpoint)
    exported = tmp_path / "model.ts"
    configs = BUNDLES_DIR / bundle / "configs"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(checkpoint),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
    )
    scripted = torch.jit.load(str(exported))
    in_channels = parser.get_parsed_content("in_channels")
    image = torch.rand(1, in_channels, 64, 64)
    with torch.no_grad():
        expected, got = network.eval()(image), scripted(image)
    expected = expected[0] if isinstance(expected, (list, tuple)) else expected
    got = got[0] if isinstance(got, (list, tuple)) else got
    assert got.shape[:2] == (1, parser.get_parsed_content("num_classes"))
    assert torch.allclose(expected, got, atol=1e-4)
