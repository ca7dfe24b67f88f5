"""pytest fixtures for projects that use django-durable-jobs (loaded automatically by pytest).

* ``durable_jobs``: the ``django_durable_jobs.testing`` helpers, as one object
  (``durable_jobs.assert_enqueued(...)``, ``durable_jobs.run_pending_jobs()``...).
* ``durable_jobs_immediate``: immediate mode for one test.

Both need database access, as any test that enqueues does (``@pytest.mark.django_db``).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest


@pytest.fixture
def durable_jobs() -> ModuleType:
    """The ``django_durable_jobs.testing`` module."""
    from django_durable_jobs import testing

    return testing


@pytest.fixture
def durable_jobs_immediate() -> Iterator[None]:
    """Run every job enqueued during the test in-process, once its transaction commits."""
    from django_durable_jobs.testing import immediate_mode

    with immediate_mode():
        yield
