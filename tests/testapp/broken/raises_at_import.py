"""A job module that raises RuntimeError when imported (a broken module-level statement)."""

from django_durable_jobs import job

raise RuntimeError("this module is broken at import")


@job
def run() -> None: ...
