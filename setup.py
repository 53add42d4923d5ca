"""Packaging details pyproject.toml cannot say: the bundles ship inside the wheel as ``medseg.bundles``.

``bundles/`` stays at the top of the repository (``python -m monai.bundle run --config_file
bundles/NAME/configs/train.json`` works from a clone); installed, the same files are ``medseg/bundles/``.
"""

from setuptools import find_packages, setup

BUNDLE_FILES = [
    "README.md",
    "*/LICENSE",
    "*/large_files.yml",
    "*/configs/*.json",
    "*/configs/*.conf",
    "*/docs/*",
    "_source/*.json",
    "_source/*/*.json",
    "strategies/*.json",
    "recipes/*",
    "variants/*.json",
    "schema/*.json",
]

setup(
    packages=[*find_packages(include=["medseg", "medseg.*", "data_prep", "data_prep.*"]), "medseg.bundles"],
    package_dir={"medseg.bundles": "bundles"},
    package_data={"medseg.bundles": BUNDLE_FILES, "medseg.sharing": ["schemas/*.json"]},
)
