"""The store's Lua scripts: one file each in ``lua/``, loaded the same way.

A script is the shared ``prelude.lua`` (the instance's keys named in ``k``, the live
statuses, helpers) followed by the script's own file. Every script is called with all
of its instance's keys (``Keys``) and its own ARGV, which each file's header maps.

Each call of a script runs its whole text, so the prelude's definitions are made anew
on every call: a script carries only those it uses (by name, directly or through
another definition it carries), which keeps that per-call work to what it needs.
"""

from __future__ import annotations

import functools
import re
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


# A top-level definition of the prelude: `local NAME = ...` or `local function NAME(...)`.
_DEFINITION = re.compile(r"^local (?:function )?(\w+)")
_COMMENT = re.compile(r"--[^\n]*")


def definitions(prelude: str) -> dict[str, str]:
    """Split `prelude` into its top-level definitions, by name, in order; each keeps the
    comment lines above it, and the lines up to the next one (``k``'s own fields)."""
    found: dict[str, str] = {}
    name, pending = "", ""
    for line in prelude.splitlines(keepends=True):
        match = _DEFINITION.match(line)
        if match:
            name = match.group(1)
            found[name], pending = pending + line, ""
        elif line.startswith("--"):
            pending += line
        elif name:
            found[name] += pending + line
            pending = ""
    return found


def used(prelude: str, body: str) -> str:
    """Return the prelude's definitions that `body` needs (``k`` always), in order."""
    defined = definitions(prelude)
    # A name used, not a table's field of that name (`k.alive`, `{alive = ...}`).
    words = re.compile(r"(?<![.\w])(" + "|".join(map(re.escape, defined)) + r")\b(?!\s*=(?!=))")
    needed, todo = {"k"}, [body, defined["k"]]
    while todo:
        for word in words.findall(_COMMENT.sub("", todo.pop())):
            if word not in needed:
                needed.add(word)
                todo.append(defined[word])
    return "".join(text for word, text in defined.items() if word in needed)


@functools.cache
def source(name: str) -> str:
    """Return the Lua source of script `name`: the prelude's definitions it uses, then its file."""
    lua = files(__package__) / "lua"
    body = (lua / f"{name}.lua").read_text()
    return used((lua / "prelude.lua").read_text(), body) + "\n" + body


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
