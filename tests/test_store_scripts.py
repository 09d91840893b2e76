"""How the store's scripts are put together: each carries the prelude definitions it uses.

Read from the sources alone; no Redis. (Running every script is what the other store
tests do: a definition a script needs and lacks fails there at its first call.)
"""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from singleton.store.scripts import NAMES, definitions, source, used

LUA = files("singleton.store") / "lua"
PRELUDE = (LUA / "prelude.lua").read_text()
DEFINED = re.compile(r"^local (?:function )?(\w+)", re.M)


def _code(text: str) -> str:
    return re.sub(r"--[^\n]*", "", text)


def test_the_prelude_splits_into_all_its_definitions_and_loses_no_line():
    found = definitions(PRELUDE)
    assert list(found) == DEFINED.findall(PRELUDE)
    assert "".join(found.values()) == PRELUDE


@pytest.mark.parametrize("name", NAMES)
def test_a_script_defines_every_prelude_name_its_code_uses(name: str):
    text = _code(source(name))
    assert text.endswith(_code((LUA / f"{name}.lua").read_text()))
    missing = [word for word in set(DEFINED.findall(PRELUDE)) - set(DEFINED.findall(text))
               if re.search(rf"(?<![.\w]){word}\b(?!\s*=(?!=))", text)]
    assert missing == []


def test_a_script_leaves_out_what_it_does_not_use():
    # sent.lua clears an outbox entry: it needs the keys and outbox_drop, not a run's end.
    assert DEFINED.findall(used(PRELUDE, (LUA / "sent.lua").read_text())) == ["k", "outbox_drop"]
    assert "finish" in DEFINED.findall(used(PRELUDE, (LUA / "end_run.lua").read_text()))


def test_a_definition_is_carried_for_a_definition_that_uses_it():
    # end_run calls finish, which calls drain and fmt: the script names neither.
    body = (LUA / "end_run.lua").read_text()
    assert "drain(" not in body
    assert {"finish", "drain", "fmt", "now_us", "clock"} <= set(DEFINED.findall(used(PRELUDE, body)))
