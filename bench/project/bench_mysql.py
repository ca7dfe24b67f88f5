"""The Django ``DATABASES`` entry for a MariaDB/MySQL URL (bench/mariadb.py's settings)."""

from urllib.parse import urlparse


def database(url: str, *, conn_max_age: int | None = 0) -> dict:
    """``mysql://user[:password]@host:port/name`` as Django's MySQL backend wants it."""
    parts = urlparse(url)
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "root",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 3306),
        "CONN_MAX_AGE": conn_max_age,
        # Django's default isolation for MySQL is READ COMMITTED (what our backend needs).
        "OPTIONS": {"charset": "utf8mb4"},
    }
