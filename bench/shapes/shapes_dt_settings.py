"""The harness's django-tasks-db settings (djproject/bench_dt_settings.py) plus shape_rows."""

from bench_dt_settings import *  # noqa: F403

INSTALLED_APPS = ["django_tasks_db", "shape_rows"]
