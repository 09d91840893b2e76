"""Settings: every default in singleton.Settings, the derived ones from the app's configuration."""

from __future__ import annotations

import os
import runpy
from dataclasses import fields

import pytest
from celery import Celery

from singleton import Settings
from tests.workers import REPO


def bare_app(**conf: object) -> Celery:
    app = Celery("settings-test", set_as_current=False)
    app.conf.update(conf)
    return app


def project_conf(monkeypatch: pytest.MonkeyPatch, **environ: str) -> dict[str, object]:
    """Return the settings celeryconfig.py gives under `environ` (no other SINGLETON_*)."""
    for name in [n for n in os.environ if n.startswith("SINGLETON_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPO / "celeryconfig.py"))


def test_an_app_that_sets_nothing_gets_every_default() -> None:
    settings = Settings.from_conf(bare_app().conf)
    assert settings == Settings()
    # Half of the Redis transport's own visibility timeout (an hour).
    assert settings.max_countdown == 1800.0


def test_an_app_that_only_sets_the_visibility_timeout_gets_half_of_it_as_max_countdown() -> None:
    app = bare_app(broker_transport_options={"visibility_timeout": 120})
    settings = Settings.from_conf(app.conf)
    assert settings.max_countdown == 60.0
    others = {f.name for f in fields(Settings)} - {"max_countdown"}
    assert {n: getattr(settings, n) for n in others} == {n: getattr(Settings(), n) for n in others}


def test_a_max_countdown_that_is_set_wins_over_the_derived_one() -> None:
    app = bare_app(broker_transport_options={"visibility_timeout": 120}, singleton_max_countdown=7)
    assert Settings.from_conf(app.conf).max_countdown == 7.0


def test_settings_given_as_text_take_their_types() -> None:
    app = bare_app(singleton_step_lease="2.5", singleton_max_connections="8", singleton_key_prefix="p")
    settings = Settings.from_conf(app.conf)
    assert (settings.step_lease, settings.max_connections, settings.key_prefix) == (2.5, 8, "p")


def test_the_project_config_without_singleton_variables_leaves_every_default_to_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = project_conf(monkeypatch)
    assert not {f"singleton_{field.name}" for field in fields(Settings)} & set(conf)
    assert Settings.from_conf(conf) == Settings()
    assert conf["beat_schedule"]["singleton-reconcile"]["schedule"] == Settings().reconcile_interval


def test_the_project_config_derives_max_countdown_from_its_visibility_timeout_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = project_conf(monkeypatch, SINGLETON_VISIBILITY_TIMEOUT="600")
    assert Settings.from_conf(conf).max_countdown == 300.0


def test_the_project_config_takes_each_singleton_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = project_conf(
        monkeypatch, SINGLETON_MAX_COUNTDOWN="3", SINGLETON_RECONCILE_INTERVAL="5", SINGLETON_KEY_PREFIX="k"
    )
    settings = Settings.from_conf(conf)
    assert (settings.max_countdown, settings.reconcile_interval, settings.key_prefix) == (3.0, 5.0, "k")
    assert conf["beat_schedule"]["singleton-reconcile"]["schedule"] == 5.0
