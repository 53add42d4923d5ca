"""Time ``--help`` of every command: ``medseg COMMAND --help`` and ``python -m data_prep --help``.

Each command runs ``--repeat`` times in a fresh interpreter (what a user waits for); the table gives the median and
the slowest, and a bare ``python -c pass`` as the floor no command can go under. The goal: every ``--help`` under 1 s.

    .venv/bin/python benchmarks/bench_cli_help.py --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

GOAL_S = 1.0


def commands() -> list[tuple[str, list[str]]]:
    """(label, argv) of every timed command, the interpreter floor first."""
    from medseg.cli import COMMANDS

    timed = [("python -c pass (floor)", ["-c", "pass"]), ("medseg --help", ["-m", "medseg", "--help"])]
    timed += [(f"medseg {name} --help", ["-m", "medseg", name, "--help"]) for name in COMMANDS]
    timed += [("python -m data_prep --help", ["-m", "data_prep", "--help"])]
    return timed


def time_command(argv: list[str], repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` runs of ``python ARGV`` (output discarded; a failure stops the benchmark)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default: 5)")
    args = parser.parse_args()
    rows, slow = [], []
    for label, argv in commands():
        times = time_command(argv, args.repeat)
        median, worst = statistics.median(times), max(times)
        rows.append(f"| `{label}` | {median:.2f} | {worst:.2f} |")
        if median >= GOAL_S and "floor" not in label:
            slow.append(label)
    print(f"| command | median s ({args.repeat} runs) | slowest s |\n|---|---:|---:|")
    print("\n".join(rows))
    print(f"\nover {GOAL_S:.0f} s (median): {', '.join(slow) if slow else 'none'}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
