"""Pagination for millions of jobs: no exact ``COUNT(*)``, no deep ``OFFSET``.

The count is exact up to ``max_pages * per_page`` rows and estimated above
(PostgreSQL planner statistics; "N+" on SQLite). Pages stop at ``max_pages``,
because an ``OFFSET`` of a million rows reads a million rows: past that
point, a filter finds jobs faster than paging does.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import cast

from django.core.paginator import Paginator
from django.db.models import QuerySet

from .. import operations
from ..models import Job


class JobPaginator(Paginator):
    max_pages = 200

    @cached_property
    def count_info(self) -> operations.Count:
        # The changelist always pages a queryset; Paginator also types lists.
        queryset = cast("QuerySet[Job]", self.object_list)
        return operations.count_jobs(queryset, cap=self.max_pages * self.per_page)

    @cached_property
    def count(self) -> int:
        return self.count_info.value

    @cached_property
    def num_pages(self) -> int:
        if self.count == 0 and not self.allow_empty_first_page:
            return 0
        pages = math.ceil(max(1, self.count - self.orphans) / self.per_page)
        return min(max(pages, 1), self.max_pages)

    @property
    def truncated(self) -> bool:
        """More rows match than the pages reach."""
        return not self.count_info.exact
