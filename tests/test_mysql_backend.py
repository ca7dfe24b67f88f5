"""What only MariaDB/MySQL has: its checks, its version floor, its insert without RETURNING.

The contract suite (tests/contract/) pins the behaviour every backend shares;
these pin the MySQL backend's own edges, on the MariaDB of the run.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings

from django_durable_jobs.checks import _check_mysql_settings
from django_durable_jobs.db import BackendSettings
from django_durable_jobs.models import Job
from tests.contract.support import prepared

pytestmark = [pytest.mark.mariadb_only, pytest.mark.django_db(transaction=True)]


def _backend():
    from django_durable_jobs.db.mysql import MySQLBackend

    return MySQLBackend("default", BackendSettings())


def test_read_committed_is_required_and_named_in_the_error(monkeypatch):
    assert _check_mysql_settings("default") == []
    options = connection.settings_dict.setdefault("OPTIONS", {})
    monkeypatch.setitem(options, "isolation_level", "repeatable read")
    (error,) = _check_mysql_settings("default")
    assert error.id == "django_durable_jobs.E040"
    assert "'repeatable read'" in error.msg
    assert "read committed" in error.hint


def test_use_tz_false_is_refused():
    with override_settings(USE_TZ=False):
        ids = [error.id for error in _check_mysql_settings("default")]
    assert ids == ["django_durable_jobs.E041"]


@pytest.mark.parametrize(("mariadb", "version"), [(True, (10, 5, 22)), (False, (5, 7, 44))])
def test_a_server_without_skip_locked_is_refused_with_its_version(monkeypatch, mariadb, version):
    monkeypatch.setattr(connection, "mysql_is_mariadb", mariadb)
    monkeypatch.setattr(connection, "mysql_version", version)
    with pytest.raises(ImproperlyConfigured) as raised:
        _backend()
    assert ".".join(map(str, version)) in str(raised.value)
    assert ("MariaDB 10.6" if mariadb else "MySQL 8.0.1") in str(raised.value)


def test_without_returning_ids_come_from_last_insert_id_in_input_order():
    """MySQL's path (no RETURNING), exercised on MariaDB: ids of one multi-row insert are
    consecutive from LAST_INSERT_ID(); unique jobs go one by one."""
    backend = _backend()
    backend.supports_returning = False
    jobs = [prepared(i) for i in range(30)]
    jobs[4] = prepared(4, unique_key="k1")
    jobs[9] = prepared(9, unique_key="k1")  # taken by jobs[4]: None
    jobs[20] = prepared(20, unique_key="k2")
    ids = backend.insert(jobs, notify=False)
    assert ids[9] is None
    assert len({i for i in ids if i is not None}) == 29
    tags = dict(Job.objects.values_list("id", "args"))
    assert [tags[job_id][0] for job_id in ids if job_id is not None] == [
        i for i in range(30) if i != 9
    ]
    claimed = backend.claim(worker_id=uuid.uuid4(), queues=None, limit=100, lease_seconds=30)
    assert sorted(job.id for job in claimed) == sorted(i for i in ids if i is not None)


def test_keys_differing_in_case_or_trailing_space_are_different_keys():
    backend = _backend()
    ids = backend.insert(
        [
            prepared(0, unique_key="Report"),
            prepared(1, unique_key="report"),
            prepared(2, unique_key="report "),
        ],
        notify=False,
    )
    assert None not in ids
