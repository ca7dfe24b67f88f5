"""``{command-help} runworker``: a management command's ``--help``, generated at build time.

The reference never drifts from the code: options added to a command (or subcommands
added to ``manage.py jobs``) appear in the docs at the next build.
"""

from __future__ import annotations

import argparse

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


class CommandHelp(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from django.core.management import load_command_class

        name = self.arguments[0]
        parser = load_command_class("django_durable_jobs", name).create_parser("manage.py", name)
        blocks = [parser.format_help()]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                blocks += [sub.format_help() for sub in action.choices.values()]
        text = "\n".join(blocks)
        return [nodes.literal_block(text, text, language="text")]


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_directive("command-help", CommandHelp)
    return {"parallel_read_safe": True}
