"""The harness's django-tasks-db settings (djproject/bench_dt_settings) on MariaDB/MySQL.

The connection age is the harness's knob (BENCH_DJ_CONN_MAX_AGE; bench/mariadb.py
sets None, persistent connections, as the peer campaign settled for PostgreSQL).
"""

import os

from bench_dt_settings import *  # noqa: F403 - the harness's settings, database swapped
from bench_mysql import database

_age = os.environ.get("BENCH_DJ_CONN_MAX_AGE", "0")
_conn_max_age = None if _age == "None" else int(_age)
DATABASES = {"default": database(os.environ["BENCH_DSN"], conn_max_age=_conn_max_age)}
