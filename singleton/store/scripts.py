"""The store's Lua scripts: one file each in ``lua/``, loaded the same way.

A script is the shared ``prelude.lua`` (the instance's keys named in ``k``, the live
statuses, helpers) followed by the script's own file. Every script is called with all
of its instance's keys (``Keys``) and its own ARGV, which each file's header maps.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Any

import redis

from .keys import Keys

NAMES = (
    "claim", "undo_claim", "begin_step", "step_mark", "end_run", "terminate", "purge",
    "suspend", "resume", "park", "raise_event", "event_timeout", "set_custom",
    "continue", "continued", "reap", "tick", "hold_buffer", "release_buffer", "sent", "relay",
    "published",
)


@functools.cache
def source(name: str) -> str:
    """Return the Lua source of script `name` (its file, after the prelude)."""
    lua = files(__package__) / "lua"
    return (lua / "prelude.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class Scripts:
    """Every script of the store, registered on one redis-py client."""

    def __init__(self, client: redis.Redis) -> None:
        """Register each script on `client` (sent by SHA, loaded on first use)."""
        self._scripts = {name: client.register_script(source(name)) for name in NAMES}

    def run(self, name: str, keys: Keys, args: list[Any], client: Any = None,
            extra_keys: tuple[str, ...] = ()) -> Any:
        """Run script `name` for one instance's `keys` (on a pipeline when `client` is one).

        `extra_keys` follow the instance's (the claim's broker queues, see ``queue.py``).
        """
        return self._scripts[name]([*keys, *extra_keys], args, client=client)
