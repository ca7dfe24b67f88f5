"""The ``TASKS`` setting's checks, reported by ``manage.py check`` on every Django version.

Django 6 registers its tasks check (which runs each backend's ``check()``) when
``django.tasks`` is first imported, and nothing imports it at start-up in a
project that loads its ``@task`` modules lazily: a misspelled option of our
backend went unreported. ``register_django_tasks_checks`` (called from
``apps.ready``) imports it, once every configured backend can be imported; a
``BACKEND`` path that cannot be imported is reported here as an error instead
(Django's own check would stop the whole check run with a traceback).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import django
from django.conf import global_settings, settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks.registry import registry
from django.utils.module_loading import import_string

from .constants import docs_url

OUR_BACKEND = "django_durable_jobs.tasks_backend.DurableJobsBackend"


def _backend_paths() -> dict[str, Any]:
    """The configured backends' paths; none when TASKS is Django's default (nothing of
    the project's to check, and no reason to import ``django.tasks`` at start-up)."""
    tasks = getattr(settings, "TASKS", None)
    if tasks == getattr(global_settings, "TASKS", None):
        return {}
    if not isinstance(tasks, dict):
        return {}
    return {
        alias: config.get("BACKEND") if isinstance(config, dict) else None
        for alias, config in tasks.items()
    }


def _import_error(path: Any) -> str | None:
    """Why ``path`` is not an importable backend class (None: it is)."""
    if not isinstance(path, str) or "." not in path:
        return f"{path!r} is not a dotted path to a class"
    try:
        import_string(path)
    except ImportError as exc:
        return str(exc)
    return None


def _has_tasks_framework() -> bool:
    """Django 6's ``django.tasks``, or the ``django_tasks`` backport on Django 5.2."""
    return django.VERSION >= (6, 0) or importlib.util.find_spec("django_tasks") is not None


@register(Tags.compatibility)
def check_task_backend_paths(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not _has_tasks_framework():
        return []
    errors: list[CheckMessage] = []
    for alias, path in _backend_paths().items():
        problem = _import_error(path)
        if problem is not None:
            errors.append(
                Error(
                    f"TASKS[{alias!r}]['BACKEND'] = {path!r} cannot be imported: {problem}",
                    hint=(
                        f"django-durable-jobs' backend is {OUR_BACKEND!r} "
                        f"({docs_url('howto/django-tasks.md')})."
                    ),
                    obj=f"TASKS[{alias!r}]",
                    id="django_durable_jobs.E022",
                )
            )
    return errors


def _tasks_checks_module() -> str | None:
    """Where the tasks framework in use keeps its check: Django 6's, or the backport's."""
    if django.VERSION >= (6, 0):
        return "django.tasks.checks"
    from django.apps import apps

    return "django_tasks.checks" if apps.is_installed("django_tasks") else None


def register_django_tasks_checks() -> None:
    """Make Django run its tasks check (our backend's ``check()``) in ``manage.py check``.

    Importing ``django.tasks`` registers that check on Django 6 (the backport's
    app does it in its ``ready()`` on 5.2). It is then swapped for one that
    stands aside while a ``BACKEND`` path cannot be imported: that is
    ``check_task_backend_paths``' error, where the framework's check would raise
    ``InvalidTaskBackend`` and end the check run with a traceback.
    """
    module_name = _tasks_checks_module()
    if module_name is None or not _backend_paths():
        return
    original = importlib.import_module(module_name).check_tasks
    if original not in registry.registered_checks:
        return  # already swapped (ready() ran twice, as in some test runners)

    def check_tasks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
        if any(_import_error(path) for path in _backend_paths().values()):
            return []
        return list(original(app_configs, **kwargs))

    registry.registered_checks.discard(original)
    registry.register(check_tasks, *getattr(original, "tags", ()))
