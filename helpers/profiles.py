"""Profiles size every notebook's work: smoke (tests), cpu (a laptop), full (a GPU), auto (pick)."""

from __future__ import annotations

import os
from typing import Any

from .paths import PROFILE_ENV
from .runtime import has_gpu

VALID_PROFILES = ("smoke", "cpu", "full", "auto")

# One table per notebook: the value of each knob in each concrete profile.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "00_setup_and_data": {
        "smoke": {"examples_per_class": 4, "synthetic_train_per_class": 100, "synthetic_test_per_class": 20},
        "cpu": {"examples_per_class": 8, "synthetic_train_per_class": 500, "synthetic_test_per_class": 100},
        "full": {"examples_per_class": 10, "synthetic_train_per_class": 5000, "synthetic_test_per_class": 1000},
    },
}


def choose_profile(requested: str = "auto") -> str:
    """Return the concrete profile: WORKBOOK_PROFILE beats the notebook's PROFILE; auto picks by GPU."""
    chosen = os.environ.get(PROFILE_ENV) or requested
    if chosen not in VALID_PROFILES:
        source = f"environment variable {PROFILE_ENV}" if os.environ.get(PROFILE_ENV) else "PROFILE"
        raise ValueError(f"Unknown profile {chosen!r} (from {source}); valid profiles: {', '.join(VALID_PROFILES)}")
    if chosen == "auto":
        return "full" if has_gpu() else "cpu"
    return chosen


def resolve_config(notebook: str, profile: str = "auto", **overrides: Any) -> dict[str, Any]:
    """Merge a notebook's profile values with explicit parameters; a parameter that is not None wins."""
    if notebook not in PROFILES:
        raise ValueError(f"No profile table for notebook {notebook!r}; known notebooks: {', '.join(PROFILES)}")
    concrete = choose_profile(profile)
    knobs = dict(PROFILES[notebook][concrete])
    unknown = sorted(set(overrides) - set(knobs))
    if unknown:
        raise ValueError(f"Unknown parameter(s) {unknown} for {notebook}; valid: {', '.join(sorted(knobs))}")
    explicit = {name: value for name, value in overrides.items() if value is not None}
    knobs.update(explicit)
    config = {"notebook": notebook, "profile": concrete, "profile_requested": profile, **knobs}
    config["set_by_parameter"] = sorted(explicit)
    forced = f", {PROFILE_ENV}={os.environ[PROFILE_ENV]}" if os.environ.get(PROFILE_ENV) else ""
    print(f"Profile {concrete!r} (asked: {profile!r}{forced})")
    for name in sorted(knobs):
        print(f"  {name} = {knobs[name]!r}" + ("   (parameter)" if name in explicit else ""))
    return config
