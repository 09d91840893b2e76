"""Settings: every default in singleton.Settings, the derived ones from the app's configuration."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from dataclasses import fields

import pytest
from celery import Celery

import singleton
from singleton import InvalidSettings, Settings
from singleton.settings import check_timings
from tests.workers import REPO

REDIS = "redis://127.0.0.1:1/0"
AMQP = "amqp://guest:guest@127.0.0.1:1//"


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


# -- timings that agree: init_app refuses to start on a contradiction ------------------
def refusal(**conf: object) -> str:
    """Return the one line init_app refuses `conf` with, on an app whose configuration was read."""
    app = bare_app(**conf)
    assert app.conf.broker_url == conf.get("broker_url") and app.configured
    with pytest.raises(InvalidSettings) as refused:
        singleton.init_app(app)
    message = str(refused.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("broker", [REDIS, AMQP, None])
def test_the_shipped_defaults_agree_on_every_broker(broker: str | None) -> None:
    conf = bare_app(broker_url=broker).conf
    settings = Settings.from_conf(conf)
    check_timings(settings, conf)
    # A dead worker's step runs again within a step lease and a reconciler pass.
    assert settings.step_lease + settings.reconcile_interval <= 2 * settings.step_lease


def test_the_project_config_agrees_with_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = project_conf(monkeypatch)
    check_timings(Settings.from_conf(conf), conf)


def test_on_rabbitmq_max_countdown_is_derived_from_its_consumer_timeout() -> None:
    settings = Settings.from_conf(bare_app(broker_url=AMQP).conf)
    assert settings.max_countdown == Settings.consumer_timeout / 2 == 900.0
    settings = Settings.from_conf(bare_app(broker_url=AMQP, singleton_consumer_timeout=600).conf)
    assert settings.max_countdown == 300.0


def test_a_short_step_lease_brings_the_reconcile_interval_down_with_it() -> None:
    settings = Settings.from_conf(bare_app(singleton_step_lease=2).conf)
    assert settings.reconcile_interval == 2.0


def test_a_max_countdown_beyond_the_visibility_timeout_is_refused() -> None:
    message = refusal(broker_url=REDIS, broker_transport_options={"visibility_timeout": 600},
                      singleton_max_countdown=900)
    assert message.startswith("singleton_max_countdown: 900 s is not below the broker's visibility_timeout")


def test_a_step_lease_beyond_the_visibility_timeout_is_refused() -> None:
    message = refusal(broker_url=REDIS, broker_transport_options={"visibility_timeout": 60},
                      singleton_step_lease=90, singleton_max_countdown=10, singleton_reconcile_interval=10)
    assert message.startswith("singleton_step_lease: 90 s is not below the broker's visibility_timeout")


def test_a_max_countdown_beyond_rabbitmqs_consumer_timeout_is_refused() -> None:
    message = refusal(broker_url=AMQP, singleton_max_countdown=1800)
    assert message.startswith("singleton_max_countdown: 1800 s is not below RabbitMQ's consumer_timeout")


def test_a_reconcile_interval_longer_than_the_step_lease_is_refused() -> None:
    message = refusal(broker_url=REDIS, singleton_reconcile_interval=120)
    assert message.startswith("singleton_reconcile_interval: 120 s is longer than singleton_step_lease")


def test_a_lease_of_zero_is_refused() -> None:
    assert refusal(singleton_run_lease=0).startswith("singleton_run_lease: must be above 0 s")


def test_a_worker_with_contradicting_timings_refuses_to_start_with_one_line() -> None:
    # The project's app reads its configuration lazily: the worker's boot step checks it.
    env = {**os.environ, "SINGLETON_RECONCILE_INTERVAL": "120"}  # the session's step lease is 2 s
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "proj", "worker", "--pool=solo"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "Refusing to start: singleton_reconcile_interval: 120 s is longer than singleton_step_lease "
        "(2 s): a dead worker's step would run again only after more than two step leases.")
