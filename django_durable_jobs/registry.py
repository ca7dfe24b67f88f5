"""Job definitions by name, so a worker can find the function a job row names."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .exceptions import DuplicateJobName, UnknownJob

if TYPE_CHECKING:
    from .definitions import JobDefinition

_registry: dict[str, JobDefinition] = {}


def register(definition: JobDefinition) -> None:
    """Add a definition; a different function under a taken name is an error."""
    existing = _registry.get(definition.name)
    if existing is not None and existing.path != definition.path:
        raise DuplicateJobName(
            f"The job name {definition.name!r} is already used by {existing.path}; "
            f"{definition.path} cannot take it too. Give one of them another name=."
        )
    _registry[definition.name] = definition


def get(name: str) -> JobDefinition:
    """The definition registered under ``name``.

    A name that is not registered yet but looks like a dotted path
    (``shop.tasks.send``) gets its module imported once, for jobs defined
    outside the autodiscovered ``<app>.jobs`` modules. An error raised while
    importing a module that exists (a missing dependency, a module that fails
    at import) is raised as it is: it is the job's real problem, not a name
    that is unknown.
    """
    try:
        return _registry[name]
    except KeyError:
        pass
    # Try the longest importable prefix: "shop.jobs.send" (a function) or
    # "shop.pipelines.Order.charge" (a step of a class in shop.pipelines).
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
                continue  # no such module (or package): try a shorter prefix
            raise  # the module exists, but something it imports does not
        if name in _registry:
            return _registry[name]
        break
    raise UnknownJob(
        f"unknown job {name!r}: no @job function is registered under this name. Was it renamed "
        "or removed? Keep old names with @job(name=...), or make sure its module is imported "
        "(jobs in <app>/jobs.py are found automatically)."
    )


def find(name: str) -> JobDefinition | None:
    """The definition registered under ``name``, or None (no import attempted)."""
    return _registry.get(name)


def all_definitions() -> dict[str, JobDefinition]:
    """A snapshot of the registry, by name."""
    return dict(_registry)


def unregister(name: str) -> None:
    """Remove a definition (for tests that define jobs on the fly)."""
    _registry.pop(name, None)
