"""Writing jobs: one or many rows, inside the caller's transaction when there is one.

* The jobs' database is in a transaction: the rows are part of it, so a
  rollback (also of a savepoint) leaves no job and no worker sees them before
  commit. The wake-up NOTIFY is sent in the same transaction.
* Another database alias is in a transaction (the jobs live elsewhere): the
  insert waits for that transaction's ``on_commit``, so a rollback there
  enqueues nothing.
* No transaction: one autocommit statement.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections, transaction

from . import tracing
from .conf import app_settings
from .exceptions import DurableJobsError
from .handle import JobHandle
from .meta import with_meta
from .rows import PreparedJob

#: What runs jobs once they are written: None leaves them to the workers. Immediate
#: mode (``DURABLE_JOBS["IMMEDIATE"]``) installs ``inline.run_after_commit`` here
#: whenever the settings change (see ``inline.install``), so enqueueing never asks
#: which mode is on.
after_write: Callable[[list[int], str], None] | None = None


def _open_transaction_elsewhere(alias: str) -> str | None:
    """The alias of another database with an open transaction, if the jobs' one has none."""
    if len(connections.settings) == 1 or connections[alias].in_atomic_block:
        return None  # (one database: nothing to look at; each look costs microseconds)
    for connection in connections.all(initialized_only=True):
        if connection.alias != alias and connection.in_atomic_block:
            return connection.alias
    return None


#: Rounds of "insert, else find the holder" for a unique key whose holder keeps
#: finishing in between (practically never more than one).
UNIQUE_ROUNDS = 5


def insert_now(prepared: list[PreparedJob], alias: str) -> list[int]:
    """Insert rows in the current transaction (or autocommit) of ``alias``; their ids.

    A unique job whose key is held gives the holder's id.
    """
    return [job_id for job_id, _ in insert_jobs(prepared, alias)]


def insert_jobs(prepared: list[PreparedJob], alias: str) -> list[tuple[int, bool]]:
    """Insert rows; ``(id, deduplicated)`` per job, in input order.

    Deduplicated means a committed job already holds this job's unique key (the
    insert waited for any racing transaction to finish first), and the id is
    that job's.
    """
    if not tracing.enabled():  # a single enqueue's path: no context manager around it
        return _insert(prepared, alias)
    with tracing.producing(prepared) as span:
        results = _insert(prepared, alias)
        tracing.sent(span, [job_id for job_id, _ in results])
    return results


def _insert(prepared: list[PreparedJob], alias: str) -> list[tuple[int, bool]]:
    from .db import get_backend  # the db layer imports models: not at package import

    backend = get_backend(alias)
    notify = app_settings.LISTEN_NOTIFY
    if backend.insert_statements(len(prepared)) > 1 and not connections[alias].in_atomic_block:
        # Several statements for a large batch: all or nothing.
        with transaction.atomic(using=alias):
            return _insert_resolving_keys(backend, prepared, alias, notify)
    return _insert_resolving_keys(backend, prepared, alias, notify)


def _insert_resolving_keys(
    backend: Any, prepared: list[PreparedJob], alias: str, notify: bool
) -> list[tuple[int, bool]]:
    results: list[tuple[int, bool] | None] = [
        None if job_id is None else (job_id, False)
        for job_id in backend.insert(prepared, notify=notify)
    ]
    for _ in range(UNIQUE_ROUNDS):
        missing = [index for index, result in enumerate(results) if result is None]
        if not missing:
            return results  # type: ignore[return-value]
        from .models import Job  # only here: models import the db layer

        keys = {prepared[index].unique_key for index in missing}
        holders = dict(
            Job.objects.using(alias).filter(unique_key__in=keys).values_list("unique_key", "id")
        )
        again: list[int] = []
        for index in missing:
            holder = holders.get(prepared[index].unique_key)
            if holder is None:
                again.append(index)
            else:
                results[index] = (holder, True)
        # The holders of these keys finished meanwhile: the keys are free again.
        first_of_key: dict[str | None, int] = {}
        for index in again:
            first_of_key.setdefault(prepared[index].unique_key, index)
        retry = list(first_of_key.values())
        for index, job_id in zip(
            retry, backend.insert([prepared[i] for i in retry], notify=notify), strict=True
        ):
            if job_id is not None:
                results[index] = (job_id, False)
    raise DurableJobsError(
        "a unique job's key kept changing hands while it was enqueued; try again"
    )


def _written(prepared: list[PreparedJob], handles: list[JobHandle[Any]], alias: str) -> None:
    """What follows the insert: the ``job_enqueued`` signal, and the ``after_write`` hook."""
    from . import signals

    hook = after_write
    if hook is None and not signals.job_enqueued.receivers:
        return
    new = [
        (handle, job)
        for handle, job in zip(handles, prepared, strict=True)
        if not handle.deduplicated
    ]
    signals.send_enqueued([handle for handle, _ in new], [job.queue for _, job in new])
    if hook is not None:
        hook([handle.id for handle, _ in new if handle.id is not None], alias)


def enqueue_prepared(prepared: list[PreparedJob]) -> list[JobHandle[Any]]:
    """Write prepared jobs and return their handles, following the module's transaction rules."""
    alias = app_settings.DATABASE
    handles: list[JobHandle[Any]] = [JobHandle(None, job.name, alias) for job in prepared]
    if not prepared:
        return handles
    other = _open_transaction_elsewhere(alias)
    if other is None:
        for handle, (job_id, deduplicated) in zip(
            handles, insert_jobs(prepared, alias), strict=True
        ):
            handle.id, handle.deduplicated = job_id, deduplicated
        _written(prepared, handles, alias)
        return handles

    def insert_on_commit() -> None:
        for handle, (job_id, deduplicated) in zip(
            handles, insert_jobs(prepared, alias), strict=True
        ):
            handle.id, handle.deduplicated = job_id, deduplicated
        _written(prepared, handles, alias)

    transaction.on_commit(insert_on_commit, using=other, robust=False)
    return handles


@dataclasses.dataclass
class GroupHandle:
    """A group: its members and the callback that runs once they have all ended."""

    run_id: uuid.UUID
    members: list[JobHandle[Any]]
    callback: JobHandle[Any]


def group(jobs: Iterable[PreparedJob], *, then: PreparedJob) -> GroupHandle:
    """Run ``jobs`` side by side; enqueue-and-run ``then`` once every one has ended.

    Ended means SUCCESSFUL, FAILED or CANCELLED: the callback always runs, and
    can look at its group's jobs (``Job.objects.filter(run_id=current_job().run_id)``).
    The callback and the members are written together, following the same
    transaction rules as ``enqueue()``.
    """
    members = list(jobs)
    run_id = uuid.uuid4()
    callback = dataclasses.replace(then, run_id=run_id, waiting_for=len(members))
    alias = app_settings.DATABASE
    handles: list[JobHandle[Any]] = [JobHandle(None, job.name, alias) for job in members]
    callback_handle: JobHandle[Any] = JobHandle(None, callback.name, alias)

    def write() -> None:
        with transaction.atomic(using=alias, savepoint=False):
            (callback_handle.id,) = insert_now([callback], alias)
            tagged = [
                dataclasses.replace(
                    job,
                    run_id=run_id,
                    meta_json=with_meta(job.meta_json, {"callback": callback_handle.id}),
                )
                for job in members
            ]
            for handle, job_id in zip(handles, insert_now(tagged, alias), strict=True):
                handle.id = job_id
        _written([callback, *members], [callback_handle, *handles], alias)

    other = _open_transaction_elsewhere(alias)
    if other is None:
        write()
    else:
        transaction.on_commit(write, using=other, robust=False)
    return GroupHandle(run_id, handles, callback_handle)


def enqueue_many(jobs: Iterable[PreparedJob]) -> list[JobHandle[Any]]:
    """Insert many jobs, from one or several definitions, in as few statements as possible.

    Build the items with ``definition.prepare(*args, **kwargs)``; every item is
    validated before the first row is written.
    """
    return enqueue_prepared(list(jobs))


async def aenqueue_many(jobs: Iterable[PreparedJob]) -> list[JobHandle[Any]]:
    """``enqueue_many()`` for async code; see ``JobDefinition.aenqueue()``."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(enqueue_prepared, thread_sensitive=True)(list(jobs))
