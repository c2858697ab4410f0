"""Start-up time of the ``mmssl`` command: ``--help``, ``list`` and a misspelled recipe key,
against a bare ``python -c pass``; optionally the same commands in another checkout (the
code before a change) for a before/after comparison.

    OMP_NUM_THREADS=1 python bench/cli_startup.py --repeats 7 [--baseline-src /path/to/old/checkout]

Each command runs ``--repeats`` times as a fresh process (round robin, so load changes hit
all alike); the median wall and CPU times are reported. Run from the repository root.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "mmssl --help": ["-m", "mmssl.cli", "--help"],
    "mmssl list": ["-m", "mmssl.cli", "list"],
    "mmssl pretrain (misspelled key)": ["-m", "mmssl.cli", "pretrain", "recipes/quickstart.yaml", "train.lrr=1"],
}


def run_time(args: list[str], src: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one fresh ``python ARGS`` with ``src`` first
    on the path; CPU time depends less on what else the machine runs."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=src, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(sources: dict[str, Path], repeats: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for label, src in sources.items():
            for name, args in COMMANDS.items():
                times.setdefault((label, name), []).append(run_time(args, src))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="another checkout of mmssl to time the same commands in (e.g. before a change)")
    args = parser.parse_args()
    sources = {"this checkout": ROOT}
    if args.baseline_src:
        sources["baseline"] = args.baseline_src.resolve()
    print(f"machine: {platform.machine()} {platform.processor() or 'cpu'}, {os.cpu_count()} cores, "
          f"load avg {os.getloadavg()[0]:.1f}; python {platform.python_version()}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; {args.repeats} runs each")
    times = measure(sources, args.repeats)
    print("| command | " + " | ".join(f"{label}: wall s | {label}: CPU s" for label in sources) + " |")
    print("| --- |" + " --- | --- |" * len(sources))
    for name in COMMANDS:
        cells = []
        for label in sources:
            runs = times[(label, name)]
            cells += [f"{statistics.median(w for w, _ in runs):.2f}", f"{statistics.median(c for _, c in runs):.2f}"]
        print(f"| `{name}` | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
