"""How long `ttrlab` takes to start for the commands that only read: the fastest of N fresh
processes each (the issue's measure), beside the median, and the peak memory. Prints a table.

    python benchmarks/cli_startup.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = [["--help"], ["status", "--help"], ["methods"], ["report", "--help"], ["sweep", "specs/cpu/main.yaml",
            "--db", "/tmp/ttrlab-startup.sqlite", "--dry-run"], ["train", "--help"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("| command | fastest s | median s | peak MB |")
    print("|---|---|---|---|")
    for argv in COMMANDS:
        times, peaks = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-m", "ttrlab", *argv], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            _, _, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest so far
            times.append(time.perf_counter() - started)
            peaks.append(usage.ru_maxrss / 1024)
        print(f"| ttrlab {' '.join(argv)} | {min(times):.2f} | {statistics.median(times):.2f} | {max(peaks):.0f} |")


if __name__ == "__main__":
    main()
