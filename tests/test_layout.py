"""The code's layout: imports at the top of modules, flowing one way, Redis only in the store.

Read from the sources' syntax trees; nothing is imported or run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from singleton.status import LIVE_STATUSES
from singleton.store.scripts import NAMES as SCRIPT_NAMES

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("singleton", "api")
# The layer's spine, bottom first: each module may import the ones before it, never after.
SPINE = [
    "singleton.store",
    "singleton.runtime",
    "singleton.worker",
    "singleton.durable",
    "singleton.queries",
    "singleton.controls",
    "singleton.client",
    "singleton.schedules",
    "singleton.wiring",
]
# Imports allowed inside a function: optional dependencies only, as (module, imported
# module). An entry needs the reason it is optional next to it.
OPTIONAL_IMPORTS: set[tuple[str, str]] = {
    # Tracing is off unless configured, and off must cost nothing: the OpenTelemetry SDK,
    # its exporters and instrumentations load only in a process that turns tracing on.
    ("singleton.tracing", "opentelemetry.instrumentation.celery"),
    ("singleton.tracing", "opentelemetry.instrumentation.wsgi"),
    ("singleton.tracing", "opentelemetry.sdk.resources"),
    ("singleton.tracing", "opentelemetry.sdk.trace"),
    ("singleton.tracing", "opentelemetry.sdk.trace.export"),
    ("singleton.tracing", "opentelemetry.exporter.otlp.proto.http.trace_exporter"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    module_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))
}


def tree_of(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def imported(name: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Return the absolute names of the modules `node` (in module `name`) imports."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        package = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, node.module] if node.module else package)
    # `from . import durable` imports a module; `from .store import Store` imports a name.
    submodules = [f"{base}.{alias.name}" for alias in node.names]
    return [m for m in submodules if m in MODULES] or [base]


def function_level_imports(name: str) -> list[tuple[int, str]]:
    found = set()
    for node in ast.walk(tree_of(name)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    found.update((inner.lineno, m) for m in imported(name, inner))
    return sorted((line, m) for line, m in found if (name, m) not in OPTIONAL_IMPORTS)


def graph() -> dict[str, set[str]]:
    """Each module of the packages -> the modules of the packages it imports at module level."""
    edges: dict[str, set[str]] = {}
    for name in MODULES:
        targets = set()
        for node in tree_of(name).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets.update(imported(name, node))
        # A module imports its parent packages too, but that is Python's doing, not a dependency.
        edges[name] = {t for t in targets if t in MODULES and t != name}
    return edges


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_layout_test_sees_every_module_of_both_packages() -> None:
    assert {"singleton", "singleton.store", "singleton.store.records", "api"} <= set(MODULES)
    assert set(SPINE) <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_inside_a_function(name: str) -> None:
    assert function_level_imports(name) == []


def test_the_walker_finds_an_import_in_a_nested_function(tmp_path: Path) -> None:
    source = "def outer():\n    def inner():\n        from .client import X\n    return inner\n"
    MODULES["singleton.example_late"] = tmp_path / "example_late.py"
    try:
        MODULES["singleton.example_late"].write_text(source)
        assert function_level_imports("singleton.example_late") == [(3, "singleton.client")]
    finally:
        del MODULES["singleton.example_late"]


def test_imports_between_modules_have_no_cycle() -> None:
    edges = graph()
    cyclic = sorted(name for name in edges if name in reachable(edges, name))
    assert cyclic == []


@pytest.mark.parametrize("lower, higher", [(a, b) for i, a in enumerate(SPINE) for b in SPINE[i + 1 :]])
def test_the_spine_imports_downwards_only(lower: str, higher: str) -> None:
    assert higher not in reachable(graph(), lower)


def test_only_the_store_imports_redis() -> None:
    users = {
        name
        for name in MODULES
        for node in ast.walk(tree_of(name))
        if isinstance(node, ast.Import | ast.ImportFrom)
        and any(m == "redis" or m.startswith("redis.") for m in imported(name, node))
    }
    assert users and all(name.startswith("singleton.store.") for name in users), users


def test_the_scripts_live_statuses_are_the_python_ones() -> None:
    prelude = (REPO / "singleton" / "store" / "lua" / "prelude.lua").read_text()
    table = prelude.split("local LIVE = {", 1)[1].split("}", 1)[0]
    names = {entry.split("=")[0].strip() for entry in table.split(",")}
    assert names == {status.value for status in LIVE_STATUSES}


LUA = REPO / "singleton" / "store" / "lua"


def test_every_lua_file_is_a_loaded_script_and_every_script_a_file() -> None:
    assert {path.stem for path in LUA.glob("*.lua")} == {*SCRIPT_NAMES, "prelude"}


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_script_maps_its_keys_and_argv_in_a_header_and_names_every_argv(name: str) -> None:
    lines = (LUA / f"{name}.lua").read_text().splitlines()
    header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("--"))]
    assert header[0].startswith(f"-- {name}: ")
    assert any(line.startswith("-- KEYS:") for line in header)
    assert any(line.startswith("-- ARGV:") for line in header)
    uses = [line for line in lines if "ARGV[" in line and not line.startswith("--")]
    assert all(re.fullmatch(r"local \w+ = (tonumber\()?ARGV\[\d+\]\)?( or \w+)?", u) for u in uses), uses
    # Scripts reach keys through the prelude's `k`, never by position.
    assert not [line for line in lines if "KEYS[" in line and not line.startswith("--")]
