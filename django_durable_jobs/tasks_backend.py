"""A ``django.tasks`` backend: functions decorated with Django's own ``@task`` run on ``runworker``.

    TASKS = {
        "default": {
            "BACKEND": "django_durable_jobs.tasks_backend.DurableJobsBackend",
            "QUEUES": ["default", "emails"],       # optional; [] allows any queue
            "OPTIONS": {"max_attempts": 5, "timeout": 60},
        }
    }

Each task becomes a job row in our table, so it gets what every job gets:
transactional enqueue, retries with backoff, leases and rescue, the admin and
``manage.py jobs``. On Django 6.x this uses ``django.tasks``; on Django 5.2 the
``django-tasks`` backport (``pip install "django-durable-jobs[tasks]"``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import django
from asgiref.sync import sync_to_async
from django.core import checks
from django.db import transaction
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string

if TYPE_CHECKING or django.VERSION >= (6, 0):
    from django.tasks import TaskContext, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:  # Django 5.2 with the django-tasks backport
    try:
        from django_tasks import TaskContext, TaskResult, TaskResultStatus
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskError
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    except ImportError as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "DurableJobsBackend needs django.tasks (Django 6.0+) or, on Django 5.2, the "
            "django-tasks backport: pip install 'django-durable-jobs[tasks]'."
        ) from exc

from . import registry, signals
from .conf import app_settings
from .constants import JobStatus, docs_url
from .definitions import DEFAULT, JobDefinition
from .enqueue import _open_transaction_elsewhere, enqueue_prepared
from .exceptions import DurableJobsError, InvalidJobArguments
from .models import Job
from .progress import Progress
from .retry import as_policy
from .serialization import decode
from .validation import check_max_attempts, check_queue, check_timeout

STATUS_MAP: dict[str, Any] = {
    JobStatus.READY: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCESSFUL: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    # django.tasks has no CANCELLED: a cancelled task did not succeed and never will.
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}

#: ``OPTIONS`` keys and the job option each one sets.
OPTION_CHECKS: dict[str, Callable[[Any], Any]] = {
    "max_attempts": check_max_attempts,
    "timeout": check_timeout,
    "retry": as_policy,
    "atomic": lambda value: value if isinstance(value, bool) else _not_bool(value),
}

#: Error history entries without an exception class (a lost worker, a timeout...).
FALLBACK_EXCEPTION = "django_durable_jobs.exceptions.JobFailed"

#: Job name -> the Django Task it runs, for the tasks this process has seen.
_tasks: dict[str, Any] = {}
#: Job name -> the (alias, OPTIONS) its registered definition was made with. Backends are
#: per thread (Django's handler), so equal options, not the same instance, mean "up to date".
_owners: dict[str, Any] = {}


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)  # slots, like Django's
class DurableTaskResult(TaskResult):  # type: ignore[type-arg,misc,unused-ignore]
    """Django's ``TaskResult``, plus ``progress``: what the task last reported with
    ``current_job().set_progress()`` (a ``Progress``, or None). Everything else is Django's."""

    progress: Progress | None = None

    def refresh(self) -> None:
        self._copy(self.task.get_backend().get_result(self.id))

    async def arefresh(self) -> None:
        self._copy(await self.task.get_backend().aget_result(self.id))

    def _copy(self, fresh: Any) -> None:
        for field in dataclasses.fields(fresh):
            if field.name not in ("task", "id", "backend"):
                object.__setattr__(self, field.name, getattr(fresh, field.name))


def _not_bool(value: Any) -> bool:
    raise DurableJobsError(f"atomic={value!r} must be True or False")


class DurableJobsBackend(BaseTaskBackend):
    """Stores tasks as durable jobs; ``manage.py runworker`` runs them."""

    supports_defer = True  # run_after -> the job's run_at
    supports_async_task = True  # async def tasks run on the worker
    supports_get_result = True  # results are rows: readable from any process
    supports_priority = True  # -100..100, higher first, as our claim orders

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.job_options: dict[str, Any] = {}
        self.option_errors: list[str] = []
        for key, value in self.options.items():
            check = OPTION_CHECKS.get(key)
            if check is None:
                self.option_errors.append(
                    f"unknown option {key!r} (known: {', '.join(OPTION_CHECKS)})"
                )
                continue
            try:
                self.job_options[key] = check(value)
            except (DurableJobsError, TypeError, ValueError) as exc:
                self.option_errors.append(f"option {key!r}: {exc}")

    # -- validation ----------------------------------------------------------
    def validate_task(self, task: Any) -> None:
        """Django's rules, then ours (queue names); registers the task as a job definition."""
        super().validate_task(task)
        try:
            check_queue(task.queue_name)
        except DurableJobsError as exc:
            raise InvalidTask(str(exc)) from exc
        self._definition(task)

    def _definition(self, task: Any) -> JobDefinition[..., Any]:
        name = task.module_path
        existing = registry.find(name)
        known = _tasks.get(name)
        if (
            existing is not None
            and known is not None
            and _owners.get(name) == (self.alias, self.job_options)
            and known.func is task.func
        ):
            return existing
        definition: JobDefinition[..., Any] = JobDefinition(
            func=_runner(task, self.alias),
            name=name,
            max_attempts=self.job_options.get("max_attempts", DEFAULT),
            timeout=self.job_options.get("timeout", DEFAULT),
            retry=self.job_options.get("retry", as_policy(None)),
            atomic=self.job_options.get("atomic", False),
        )
        registry.register(definition)
        _tasks[name], _owners[name] = task, (self.alias, self.job_options)
        # Django's task signals, sent from ours for this job only: a receiver for every
        # job would make each job of the project wait for its outcome's write.
        signals.job_started.connect(
            _send_task_started, sender=definition, weak=False, dispatch_uid=f"ddj-tasks:{name}"
        )
        signals.job_finished.connect(
            _send_task_finished, sender=definition, weak=False, dispatch_uid=f"ddj-tasks:{name}"
        )
        return definition

    # -- enqueue ---------------------------------------------------------------
    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Store a job for ``task``; inside a transaction on the jobs' database it joins it.

        The returned result's ``id`` is the job's id. When the insert waits for a
        transaction on another database (see docs/howto/enqueue-and-transactions.md)
        ``id`` is ``""`` and ``enqueued_at`` None until that transaction commits.
        """
        self.validate_task(task)
        args, kwargs = _json_arguments(args, kwargs)
        definition = self._definition(task).using(
            queue=task.queue_name,
            priority=task.priority,
            run_at=task.run_after,
            max_attempts=self.job_options.get("max_attempts"),
            timeout=self.job_options.get("timeout", DEFAULT),
        )
        prepared = definition.prepare(*args, **kwargs)
        deferred_on = _open_transaction_elsewhere(app_settings.DATABASE)
        (handle,) = enqueue_prepared([prepared])
        result: TaskResult[Any, Any] = DurableTaskResult(
            task=task,
            id="",
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )

        def written() -> None:
            # The stored row's values (its enqueued_at, and in immediate mode its
            # outcome): ``result == backend.get_result(result.id)`` from the start.
            assert handle.id is not None  # written by now
            row = Job.objects.using(app_settings.DATABASE).get(id=handle.id)
            stored = to_task_result(row, task, self.alias)
            for field in dataclasses.fields(stored):  # the return value too
                object.__setattr__(result, field.name, getattr(stored, field.name))
            task_enqueued.send(type(self), task_result=result)

        if deferred_on is None:
            written()
        else:
            transaction.on_commit(written, using=deferred_on)
        return result

    # -- results -------------------------------------------------------------
    def get_result(self, result_id: str) -> Any:
        """The task's result, read from its job row; ``TaskResultDoesNotExist`` if none."""
        try:
            job_id = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        row = Job.objects.using(app_settings.DATABASE).filter(id=job_id).first()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        task = _task_for(row.name)
        if task is None:
            raise TaskResultDoesNotExist(
                f"{result_id}: job #{job_id} runs {row.name}, which is not a django.tasks Task"
            )
        return to_task_result(row, task, self.alias)

    async def aget_result(self, result_id: str) -> Any:
        return await sync_to_async(self.get_result, thread_sensitive=True)(result_id)

    # -- checks ----------------------------------------------------------------
    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        obj = f"TASKS[{self.alias!r}]"
        messages: list[checks.CheckMessage] = [
            checks.Error(
                f"{obj}['OPTIONS'] has an invalid {problem}.",
                hint=f"The options and their values: {docs_url('howto/django-tasks.md')}",
                obj=obj,
                id="django_durable_jobs.E020",
            )
            for problem in self.option_errors
        ]
        for queue in sorted(self.queues):
            try:
                check_queue(queue)
            except DurableJobsError as exc:
                messages.append(
                    checks.Error(
                        f"{obj}['QUEUES'] lists {queue!r}, which jobs cannot use: {exc}",
                        hint="Fix the name, or add it to DURABLE_JOBS['QUEUES'].",
                        obj=obj,
                        id="django_durable_jobs.E021",
                    )
                )
        return messages


def _json_arguments(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """Django's rule for task arguments: JSON values only (tuples become lists)."""
    try:
        normalized: Any = (normalize_json(list(args)), normalize_json(dict(kwargs)))
        return normalized
    except (TypeError, ValueError) as exc:
        raise InvalidJobArguments(
            f"django.tasks arguments must be JSON values ({exc}); pass str, int, float, bool, "
            "None, lists and dicts (a model instance: its pk). @job functions accept more types."
        ) from None


def _task_for(name: str) -> Any:
    task = _tasks.get(name)
    if task is not None:
        return task
    try:
        task = import_string(name)
    except ImportError:
        return None
    return task if isinstance(task, Task) else None


def _parse(value: Any) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


def to_task_result(row: Job, task: Any, backend_alias: str) -> Any:
    """A ``TaskResult`` for a job row: our statuses, errors and attempts in Django's terms."""
    entries = [entry for entry in row.errors if entry.get("outcome") != "interrupted"]
    errors = [
        TaskError(
            exception_class_path=entry.get("exception_class") or FALLBACK_EXCEPTION,
            traceback=entry.get("traceback") or entry.get("message") or "",
        )
        for entry in entries
    ]
    workers = {entry.get("attempt"): entry.get("worker") for entry in entries}
    last_worker = str(row.worker_id) if row.worker_id else ""
    worker_ids = [workers.get(n) or last_worker for n in range(1, row.attempts + 1)]
    first_start = _parse(entries[0].get("started_at")) if entries else None
    result: TaskResult[Any, Any] = DurableTaskResult(
        task=task,
        id=str(row.id),
        status=STATUS_MAP[row.status],
        enqueued_at=row.enqueued_at,
        started_at=first_start or row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.started_at,
        args=decode(row.args),
        kwargs=decode(row.kwargs),
        backend=backend_alias,
        errors=errors,
        worker_ids=worker_ids,
        progress=Progress.from_value(row.progress),
    )
    if row.status == JobStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", decode(row.result))
    return result


def _current_result(task: Any, alias: str, job_id: int | None = None) -> Any:
    """The ``TaskResult`` of the running job (``job_id``, or the current job's)."""
    if job_id is None:
        from .context import current_job

        context = current_job()
        if context is None:
            raise DurableJobsError(f"{task.module_path} takes a context but runs outside a job")
        job_id = context.job_id
    row = Job.objects.using(app_settings.DATABASE).get(id=job_id)
    return to_task_result(row, task, alias)


def _runner(task: Any, alias: str) -> Callable[..., Any]:
    """The function a worker calls: the task's own, with a ``TaskContext`` when it takes one."""
    func = task.func
    run: Callable[..., Any]
    if inspect.iscoroutinefunction(func):

        async def run(*args: Any, **kwargs: Any) -> Any:
            if task.takes_context:
                result = await sync_to_async(_current_result)(task, alias)
                args = (TaskContext(task_result=result), *args)
            return await func(*args, **kwargs)

    else:

        def run(*args: Any, **kwargs: Any) -> Any:
            if task.takes_context:
                args = (TaskContext(task_result=_current_result(task, alias)), *args)
            return func(*args, **kwargs)

    functools.update_wrapper(run, func)
    if task.takes_context:  # what enqueue checks a call against: without the context
        signature = inspect.signature(func)
        run.__signature__ = signature.replace(  # type: ignore[union-attr]
            parameters=list(signature.parameters.values())[1:]
        )
    return run


# -- Django's task signals, sent from ours for the jobs that are Django tasks --------------
def _send_task_started(sender: Any, context: Any, **kwargs: Any) -> None:
    task = _tasks.get(context.name)
    if task is None or not signals.listened(task_started, DurableJobsBackend):
        return
    result = _current_result(task, task.backend, context.job_id)
    task_started.send(DurableJobsBackend, task_result=result)


def _send_task_finished(sender: Any, context: Any, **kwargs: Any) -> None:
    """Sent after the outcome's write (the row is final), inside the exception handler."""
    task = _tasks.get(context.name)
    if task is None or not signals.listened(task_finished, DurableJobsBackend):
        return
    task_finished.send(
        DurableJobsBackend, task_result=_current_result(task, task.backend, context.job_id)
    )


__all__ = ["STATUS_MAP", "DurableJobsBackend", "DurableTaskResult", "to_task_result"]
