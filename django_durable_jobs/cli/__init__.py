"""Subcommands of ``manage.py jobs``: one module each, listed in ``SUBCOMMANDS``.

A subcommand module defines ``register(subparsers)``, which adds its parser and
sets ``handler=<function(command, options) -> int>`` as the parser's default;
the returned integer is the exit status. Keep the logic in ``operations`` or
``scheduler`` so the admin shares it; modules here only parse and print.
"""

from __future__ import annotations

SUBCOMMANDS: list[str] = [
    "schedule",
    "list",
    "show",
    "retry",
    "cancel",
    "run_now",
    "purge",
    "stats",
    "pause",
    "resume",
    "health",
]
