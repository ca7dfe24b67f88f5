"""The bench project's settings (bench/project/bench_ddj_settings.py) plus the shape_rows app."""

from bench_ddj_settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "shape_rows"]  # noqa: F405
