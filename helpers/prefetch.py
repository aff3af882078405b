"""Stage CIFAR-10 and every pretrained weight file for an offline classroom: `python -m helpers.prefetch`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .data import CIFAR100_CACHE, DataFormatError, DataUnavailableError, load_cifar100, load_official_cifar10
from .paths import OFFLINE_ENV, data_root, is_offline
from .weights import WEIGHT_FILES, fetch_weights


def _cifar10() -> Path:
    """Fetch and parse official CIFAR-10 into the cache; return the compact cache file."""
    load_official_cifar10()
    return data_root() / "cifar10" / "cifar10-official.npz"


def _cifar100() -> Path:
    """Fetch and parse official CIFAR-100 into the cache (optional: notebook 11's CIFAR-FS episodes)."""
    load_cifar100()
    return data_root() / "cifar100" / CIFAR100_CACHE


OPTIONAL = ("cifar100",)  # staged only when named: `make prefetch ITEMS=cifar100`


def staging_plan() -> dict[str, Callable[[], Path]]:
    """Name every item the course can use offline, with the function that stages it."""
    plan: dict[str, Callable[[], Path]] = {"cifar10": _cifar10, "cifar100": _cifar100}
    for entry in WEIGHT_FILES:
        plan[entry.key] = lambda entry=entry: fetch_weights(entry)
    return plan


def prefetch(only: list[str] | None = None) -> dict[str, str]:
    """Stage each item, carrying on past failures; return item -> 'ok: path' or 'FAILED: reason'."""
    plan = staging_plan()
    unknown = sorted(set(only or []) - set(plan))
    if unknown:
        raise SystemExit(f"Unknown item(s) {unknown}; valid items: {', '.join(plan)}")
    results = {}
    for name, stage in plan.items():
        if (only and name not in only) or (not only and name in OPTIONAL):
            continue
        print(f"--- {name}")
        try:
            results[name] = f"ok: {stage()}"
        except (DataUnavailableError, DataFormatError, RuntimeError, OSError, ValueError) as error:
            results[name] = f"FAILED: {error}"
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the pre-fetch command and print what was staged and what could not be."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("items", nargs="*", help=f"what to stage (default: all of {', '.join(staging_plan())} but the "
                                                 f"optional {', '.join(OPTIONAL)})")
    args = parser.parse_args(argv)
    print(f"Data root: {data_root()}")
    if is_offline():
        print(f"Note: {OFFLINE_ENV}=1 is set, so only what is already cached can be reported; unset it to download.")
    results = prefetch(args.items)
    print("\nSummary")
    for name, outcome in results.items():
        print(f"  {name:24s} {outcome}")
    failed = [name for name, outcome in results.items() if outcome.startswith("FAILED")]
    if failed:
        print(f"\n{len(failed)} item(s) could not be staged: {', '.join(failed)}. Fix the network and rerun; "
              "what is staged stays.")
    else:
        print(f"\nAll staged. Copy {data_root()} to the offline machines (or point WORKBOOK_DATA at it).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
