"""Outages of what a process depends on (the channel layer, the database), told once each.

During a Redis or database outage every delta, checkpoint, ending and send fails, hundreds
of times a second per process; logging each with its traceback wrote 16.6 MB in a 30 s
Redis outage. An `Outage` counts those failures instead, and logs one line when the first
one comes and one when the thing works again, with how many failed in between. It also
paces retries: while the layer is down, broadcasts are tried at most every
`TRY_EVERY` seconds instead of once per delta.
"""

from __future__ import annotations

import logging
import time

from django.db import InterfaceError, InternalError, OperationalError

logger = logging.getLogger(__name__)

# What a database says when it cannot take a query for now (locked, gone, read-only while
# failing over); anything else (a constraint, a value that does not fit) would only be
# refused again.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, InternalError)

TRY_EVERY = 0.25  # seconds between tries while an outage lasts


class Outage:
    def __init__(self, name: str):
        self.name = name
        self.since: float | None = None  # monotonic time of the first failure, None while working
        self.failures = 0
        self._tried_at = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        self._tried_at = now
        self.failures += 1
        if self.since is None:
            self.since = now
            logger.error("%s is failing (%s: %s); counting failures until it works again",
                         self.name, type(error).__name__, " ".join(str(error).split())[:200])

    def worked(self) -> None:
        if self.since is not None:
            logger.warning("%s works again after %.1f s; %d operations failed meanwhile",
                           self.name, time.monotonic() - self.since, self.failures)
            self.since = None
            self.failures = 0

    def worth_trying(self) -> bool:
        """Whether to try now: always while it works; every TRY_EVERY seconds while down."""
        return self.since is None or time.monotonic() - self._tried_at >= TRY_EVERY

    def skipped(self) -> None:
        """An operation not even tried because the outage goes on: counted with the failures."""
        self.failures += 1


layer_outage = Outage("the channel layer")
database_outage = Outage("the database")
