"""Sphinx configuration: MyST Markdown, the furo theme, API pages from docstrings.

Build with ``make docs`` (warnings are errors). The pages stay plain Markdown, readable
on GitHub; this file only adds the site around them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

# autodoc imports the package, which needs configured Django settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docs.django_settings")
import django  # noqa: E402

django.setup()

import django_durable_jobs  # noqa: E402

project = "django-durable-jobs"
author = "django-durable-jobs contributors"
copyright = "django-durable-jobs contributors"
release = django_durable_jobs.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "command_help",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_inventories", "_ext"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}

# Links to Django's and Python's docs. The inventories are local files (made by
# _inventories/make_inventories.py) so that building the docs needs no network.
intersphinx_mapping = {
    "django": (
        "https://docs.djangoproject.com/en/stable/",
        str(Path(__file__).parent / "_inventories" / "django.inv"),
    ),
    "python": (
        "https://docs.python.org/3/",
        str(Path(__file__).parent / "_inventories" / "python.inv"),
    ),
}

html_theme = "furo"
html_title = f"django-durable-jobs {release}"
html_static_path: list[str] = []
