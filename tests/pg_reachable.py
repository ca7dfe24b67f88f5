"""Exit 0 when the PostgreSQL of TEST_POSTGRES_URL answers, 1 (with the reason) when not."""

import os
import sys

import psycopg

url = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
try:
    psycopg.connect(url, connect_timeout=5).close()
except psycopg.Error as exc:
    print(f"PostgreSQL at {url} is not reachable: {str(exc).strip()}", file=sys.stderr)
    sys.exit(1)
