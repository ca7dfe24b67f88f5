"""Exit 0 when the MariaDB/MySQL of TEST_MYSQL_URL answers, 1 (with the reason) when not.

Also 1 when mysqlclient is missing (it needs the client library's headers to build:
``apt-get install libmariadb-dev pkg-config``).
"""

import os
import sys
from urllib.parse import unquote, urlparse

url = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
try:
    import MySQLdb
except ImportError as exc:
    print(f"mysqlclient is not installed ({exc}): pip install mysqlclient", file=sys.stderr)
    sys.exit(1)
parts = urlparse(url)
try:
    MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        connect_timeout=5,
    ).close()
except MySQLdb.Error as exc:
    print(f"MariaDB/MySQL at {url} is not reachable: {exc}", file=sys.stderr)
    sys.exit(1)
