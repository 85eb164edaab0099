"""Key pagination for list routes: ``?after=KEY&limit=N`` and an ``X-Next-After`` header.

A page continues after the key of the previous page's last item, so page 1,000 costs what
page 1 does (an index range), unlike an offset that the database must count past.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fastapi import Response

AFTER = "Key (id) of the previous page's last item; the X-Next-After header gives it."
NEXT_HEADER = "X-Next-After"


class Keyed(Protocol):
    @property
    def id(self) -> int | str: ...


def next_page(response: Response, items: Sequence[Keyed], limit: int) -> None:
    """Set ``X-Next-After`` to the last item's key when the page is full (more may follow)."""
    if items and len(items) == limit:
        response.headers[NEXT_HEADER] = str(items[-1].id)
