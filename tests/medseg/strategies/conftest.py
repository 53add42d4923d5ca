"""Fixtures of the strategies tests: one MLflow store, one phantom dataset and the tiny bundles for the package.

MLflow's SQLite migrations cost seconds, so the store is shared by the whole package; ``MEDSEG_HOME`` points at it
so the home folder is never touched.
"""

from __future__ import annotations

import argparse
import importlib

import mlflow
import pytest

from tests.helpers import private_tracking_store
from tests.medseg.strategies import testbed


@pytest.fixture(scope="package")
def store(tmp_path_factory):
    with private_tracking_store(tmp_path_factory.mktemp("medseg_home")) as home:
        yield home


@pytest.fixture(scope="package")
def client(store):
    return mlflow.MlflowClient(f"sqlite:///{(store / 'mlflow.db').as_posix()}")


@pytest.fixture(scope="package")
def dataset(tmp_path_factory):
    return testbed.write_dataset(tmp_path_factory.mktemp("data") / "squares").parent


@pytest.fixture(scope="package")
def unet_bundle(store, dataset, tmp_path_factory):
    return testbed.write_bundle(tmp_path_factory.mktemp("bundles"), dataset)


@pytest.fixture(scope="package")
def flex_bundle(store, dataset, tmp_path_factory):
    return testbed.write_bundle(tmp_path_factory.mktemp("bundles"), dataset, network="flexunet", name="tiny_flex")


def run_command(name: str, argv: list[str]) -> int:
    """``medseg <name> ARGV`` through the command module's own ``add_arguments`` and ``run``."""
    module = importlib.import_module(f"medseg.commands.{name}")
    parser = argparse.ArgumentParser(prog=f"medseg {name}")
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def runs_of(client, experiment: str = f"{testbed.BUNDLE_NAME}/{testbed.DATASET_NAME}") -> list:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], order_by=["start_time ASC"])


def children_of(client, parent_id: str, experiment: str = f"{testbed.BUNDLE_NAME}/{testbed.DATASET_NAME}") -> list:
    return [r for r in runs_of(client, experiment) if r.data.tags.get("mlflow.parentRunId") == parent_id]


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
