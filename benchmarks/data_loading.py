"""Benchmark: load the 60,000 CIFAR-10 images of a local copy into arrays, cold and from the cache.

Run with `make bench` (or `python -m benchmarks.data_loading [SOURCE]`). SOURCE defaults to
$WORKBOOK_CIFAR10_SOURCE, else ../shared/data/cifar10-jpg.tar.gz. The cold run uses a fresh, temporary
data root, so the figures never depend on what is already cached. Targets on 2 cores: cold <= 30 s,
cached <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from helpers.data import load_image_folder
from helpers.paths import CIFAR10_SOURCE_ENV, DATA_ENV
from helpers.reporting import write_benchmark

from .common import JPEG_COPY, data_name

TARGETS = {"cold": 30.0, "cached": 2.0}


def timed_load(source: Path) -> tuple[float, object]:
    """Load the copy once and return (seconds, data)."""
    start = time.perf_counter()
    loaded = load_image_folder(source, dataset="cifar10")
    return time.perf_counter() - start, loaded


def main(argv: list[str] | None = None) -> int:
    """Time a cold load and three cached loads; write the report; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=os.environ.get(CIFAR10_SOURCE_ENV) or JPEG_COPY, type=Path)
    args = parser.parse_args(argv)
    if not args.source.exists():
        print(f"No CIFAR-10 copy at {args.source}: pass a path or set {CIFAR10_SOURCE_ENV}.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-data-") as scratch:
        os.environ[DATA_ENV] = scratch
        cold, loaded = timed_load(args.source)
        cached = min(timed_load(args.source)[0] for _ in range(3))
    rows = [{"stage": stage, "seconds": round(seconds, 2), "target_s": TARGETS[stage],
             "images": len(loaded.y_train) + len(loaded.y_test), "met": seconds <= TARGETS[stage]}
            for stage, seconds in (("cold", cold), ("cached", cached))]
    identity = {**loaded.identity, "name": data_name(loaded.identity)}
    write_benchmark("data_loading", rows, ["stage", "seconds", "target_s", "images", "met"], identity,
                    notes="cold: read the archive, decode every JPEG, write the .npz cache; "
                          "cached: hash the archive and read the .npz (best of 3).")
    return 0 if all(row["met"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
