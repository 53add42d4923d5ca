"""The rules every medseg command shares: flag spelling and aliases, exit codes, Ctrl-C, help texts, fast --help."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
import types

import pytest

from medseg import cli
from medseg.bundle.errors import BundleInputError


@pytest.fixture
def fake_command(monkeypatch):
    """Register ``medseg fake`` whose run does what the test puts in ``behaviour``."""
    behaviour: dict = {}
    module = types.ModuleType("fake_command")

    def add_arguments(parser):
        parser.add_argument("--tracking_uri", default="sqlite:///x.db", help="store")
        parser.add_argument("--dataset_dir", help="data")

    def run(args):
        behaviour["args"] = args
        if "raise" in behaviour:
            raise behaviour["raise"]
        return 0

    module.add_arguments, module.run = add_arguments, run
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake-cmd", ("fake_command", "a test command"))
    return behaviour


def test_hyphen_spelling_is_an_alias(fake_command):
    assert cli.main(["fake-cmd", "--tracking-uri", "http://h:5000", "--dataset-dir=/d"]) == 0
    assert fake_command["args"].tracking_uri == "http://h:5000" and fake_command["args"].dataset_dir == "/d"
    assert cli.main(["fake_cmd", "--dataset_dir", "/e"]) == 0  # the command name too
    assert fake_command["args"].dataset_dir == "/e"


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (BundleInputError("data/datalist.json: not found; pass --dataset_dir"), 2, "data/datalist.json: not found"),
        (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"),
    ],
)
def test_exit_codes_and_one_line(fake_command, capsys, error, status, line):
    fake_command["raise"] = error
    assert cli.main(["fake-cmd"]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medseg fake-cmd: ") and line in err[0]


def test_bad_option_and_unknown_command_are_bad_input(fake_command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["fake-cmd", "--no_such_flag"])
    assert stop.value.code == 2
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command 'no-such-command'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_shows_defaults_one_spelling_and_no_markup(name):
    parser = cli.build_parser(name, importlib.import_module(cli.COMMANDS[name][0]))
    text = parser.format_help()
    assert "``" not in text and ":func:" not in text and ":class:" not in text
    for action in parser._actions:
        long_flags = [f for f in action.option_strings if f.startswith("--")]
        assert all("-" not in f[2:] for f in long_flags), f"{name}: {long_flags} not spelled with underscores"
        default = action.default
        hidden = default is None or default is False or default == [] or default is argparse.SUPPRESS
        shown = not hidden and action.nargs != 0
        if shown and action.help and action.option_strings:
            assert "default" in parser._get_formatter()._get_help_string(action), f"{name}: {action.dest}"


def test_help_is_fast_and_imports_no_torch():
    # every command's --help in one process: none may import torch, MONAI or MLflow
    code = (
        "import sys, contextlib, io\n"
        "from medseg import cli\n"
        "for name in cli.COMMANDS:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            cli.main([name, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(m for m in ('torch', 'monai', 'mlflow', 'ignite') if m in sys.modules))\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert elapsed < 10  # loose: benchmarks/bench_cli_help.py measures each command (under 1 s on an idle machine)


def test_python_m_medseg_is_the_command():
    done = subprocess.run([sys.executable, "-m", "medseg", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Exit status: 0 done, 2 bad input, 1 failure, 130 interrupted" in done.stdout
