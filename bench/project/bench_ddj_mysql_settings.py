"""bench_ddj_settings on MariaDB/MySQL (bench/mariadb.py): the same apps and defaults."""

import os

from bench_ddj_settings import *  # noqa: F403 - the PostgreSQL settings, database swapped
from bench_mysql import database

DATABASES = {"default": database(os.environ["BENCH_DSN"])}
