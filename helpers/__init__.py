"""Plumbing for the transfer-learning workbook: paths, runtime, profiles, data, splits and pipelines."""

from .paths import configure_framework_caches

configure_framework_caches()  # before torch or keras are imported, so pre-fetched weights are found

__version__ = "0.1.0"
