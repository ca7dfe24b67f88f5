"""Fixtures of the backend contract suite (helpers: ``support.py``)."""

from __future__ import annotations

import pytest

from django_durable_jobs.db import Backend, get_backend

from .support import ALIAS


@pytest.fixture
def backend() -> Backend:
    """The backend of the run's database (``TEST_DB``): the one under contract."""
    return get_backend(ALIAS)
