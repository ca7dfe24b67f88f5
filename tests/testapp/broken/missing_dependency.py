"""A job module whose dependency is not installed: importing it raises ModuleNotFoundError."""

import a_dependency_that_is_not_installed  # noqa: F401

from django_durable_jobs import job


@job
def run() -> None: ...
