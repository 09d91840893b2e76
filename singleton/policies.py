"""Start policies: what a start does when the ID already has a run on record.

Both are decided inside the atomic claim, never by reading first in Python.
"""

from __future__ import annotations

import enum


class IfLive(enum.StrEnum):
    """What a start does while a live (Pending, Running, Suspended...) run holds the ID."""

    FAIL = "fail"  # refuse: InstanceAlreadyExists, HTTP 409 (Durable Functions' rule)
    USE_EXISTING = "use_existing"  # answer with the live run instead of refusing
    TERMINATE_EXISTING = "terminate_existing"  # terminate it and start anew, atomically


class IfFinished(enum.StrEnum):
    """What a start does when only a finished run is on record."""

    ALLOW = "allow"  # start a new run (Durable Functions' rule)
    ALLOW_FAILED_ONLY = "allow_failed_only"  # only after Failed or Terminated
    REJECT = "reject"  # an ID runs once while its record exists

