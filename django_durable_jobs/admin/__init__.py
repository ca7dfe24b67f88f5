"""The Django admin as the jobs' operations console.

One module per part: ``jobs`` (the list and URL wiring), ``detail`` (a job's
page and its actions), ``actions`` (bulk actions), ``dashboard``, ``pages``
(the console's own pages and tabs), ``filters``, ``paging``, ``charts``,
``rendering``, ``workers`` and ``entries`` (the database schedule entries).
"""

from .entries import ScheduleEntryAdmin
from .jobs import JobAdmin
from .workers import DashboardEntry, SchedulesEntry, WorkerAdmin

__all__ = ["DashboardEntry", "JobAdmin", "ScheduleEntryAdmin", "SchedulesEntry", "WorkerAdmin"]
