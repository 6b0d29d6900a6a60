"""ensure_ray: join the cluster `ray start` runs on this node, else start an embedded Ray."""

from __future__ import annotations

import os

import pytest

from distilray import runtime

ray = pytest.importorskip("ray")


def test_running_cluster_reads_the_address_ray_start_wrote(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert runtime.running_cluster() is None
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("10.1.2.3:6379")
    assert runtime.running_cluster() == "10.1.2.3:6379"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert runtime.running_cluster() is None  # ray.init() reads RAY_ADDRESS itself


@pytest.fixture
def init_calls(monkeypatch) -> list[dict]:
    """ray.init replaced by a recorder (and Ray reported as not yet initialised)."""
    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(runtime, "quiet_ray_console", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_DATA_LOGGING_CONFIG", raising=False)  # restored after the test
    return calls


def test_ensure_ray_joins_a_running_cluster(init_calls, monkeypatch):
    monkeypatch.setattr(runtime, "running_cluster", lambda: "10.1.2.3:6379")
    runtime.ensure_ray(num_cpus=3)
    (call,) = init_calls
    assert call["address"] == "10.1.2.3:6379"
    assert "num_cpus" not in call  # Ray refuses resources when joining a cluster


def test_ensure_ray_starts_an_embedded_ray_when_none_runs(init_calls, monkeypatch):
    monkeypatch.setattr(runtime, "running_cluster", lambda: None)
    runtime.ensure_ray(num_cpus=3)
    (call,) = init_calls
    assert call["address"] == "local" and call["num_cpus"] == 3


def test_embedded_ray_hides_only_the_default_token_auth_notice(init_calls, monkeypatch, caplog):
    """Ray says at every start that token auth (its default) is on; that line goes,
    Ray's other lines from the same place stay."""
    import logging

    monkeypatch.setattr(runtime, "running_cluster", lambda: None)
    runtime.ensure_ray(num_cpus=3)
    log = logging.getLogger(runtime.TOKEN_AUTH_LOGGER)
    with caplog.at_level(logging.WARNING, logger=runtime.TOKEN_AUTH_LOGGER):
        log.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=…")
        log.warning("Token authentication is disabled for this Ray cluster. Anyone …")
    assert [r.getMessage()[:39] for r in caplog.records] == [
        "Token authentication is disabled for th"
    ]
    runtime.hide_default_token_auth_notice()  # idempotent: one filter
    assert len(log.filters) == 1


def test_ray_data_console_is_quiet_in_every_process_of_an_embedded_ray(monkeypatch):
    """Ray Data processes (coordinators, training workers) read their logging setup
    from RAY_DATA_LOGGING_CONFIG: ours keeps Ray's default with the console at ERROR."""
    import yaml
    from ray.data._internal import logging as ray_data_logging

    name = ray_data_logging.RAY_DATA_LOGGING_CONFIG_ENV_VAR_NAME
    monkeypatch.delenv(name, raising=False)
    path = runtime.quiet_ray_data_processes()
    assert path is not None and os.environ[name] == path
    with open(path) as f:
        config = yaml.safe_load(f)
    assert config["handlers"]["console"]["level"] == "ERROR"
    assert config["loggers"] == ray_data_logging.DEFAULT_CONFIG["loggers"]  # the log file keeps all
    monkeypatch.setenv(name, "/elsewhere/logging.yaml")
    assert runtime.quiet_ray_data_processes() is None  # a user's own setup stays
    assert os.environ[name] == "/elsewhere/logging.yaml"


def test_embedded_ray_runs_training_without_a_preemption_watcher(init_calls, monkeypatch):
    """One embedded node is never drained: no watcher actor (and no error line about
    it at every run) unless the user asks for one; a joined cluster keeps Ray's default."""
    monkeypatch.delenv(runtime.PREEMPTION_WATCHER_ENV, raising=False)
    monkeypatch.setattr(runtime, "running_cluster", lambda: "10.1.2.3:6379")
    runtime.ensure_ray()
    assert runtime.PREEMPTION_WATCHER_ENV not in os.environ

    monkeypatch.setattr(runtime, "running_cluster", lambda: None)
    runtime.ensure_ray(num_cpus=3)
    assert os.environ[runtime.PREEMPTION_WATCHER_ENV] == "0"

    monkeypatch.setenv(runtime.PREEMPTION_WATCHER_ENV, "1")
    runtime.ensure_ray(num_cpus=3)
    assert os.environ[runtime.PREEMPTION_WATCHER_ENV] == "1"
