"""Settings: layering, parsing, and one clear line for each mistake."""

import gc
import tempfile

import pytest

from app import check_configuration, create_app
from app.api import BACKEND_KEY
from app.settings import ConfigError, load_settings


def test_defaults():
    settings = load_settings({})
    assert settings.backend == "echo" and settings.api_keys == frozenset()
    assert settings.max_body_bytes == 32 * 1024 * 1024
    assert settings.max_batch_bytes == 256 * 1024 * 1024 and settings.batch_expire_seconds == 24 * 3600
    assert (
        settings.batch_min_seconds == 0
        and load_settings({"UNDERSTUDY_BATCH_MIN_SECONDS": "0.5"}).batch_min_seconds == 0.5
    )


def test_file_then_environment_then_overrides(tmp_path):
    config = tmp_path / "understudy.yaml"
    config.write_text("backend: echo\nmax_body_bytes: 1000\napi_keys: [a, b]\nthreads: 8\n")
    environ = {"UNDERSTUDY_CONFIG": str(config), "UNDERSTUDY_MAX_BODY_BYTES": "2000"}
    settings = load_settings(environ, overrides={"threads": 4})
    assert settings.max_body_bytes == 2000 and settings.threads == 4
    assert settings.api_keys == frozenset({"a", "b"})


def test_keys_are_comma_separated_and_trimmed():
    assert load_settings({"UNDERSTUDY_API_KEYS": " k1, k2 ,,"}).api_keys == frozenset({"k1", "k2"})


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"UNDERSTUDY_MAX_BODY_BYTES": "lots"}, "UNDERSTUDY_MAX_BODY_BYTES: must be a positive whole number"),
        ({"UNDERSTUDY_THREADS": "0"}, "UNDERSTUDY_THREADS: must be a positive whole number"),
        ({"UNDERSTUDY_ALLOW_UNKNOWN_FIELDS": "maybe"}, "UNDERSTUDY_ALLOW_UNKNOWN_FIELDS: must be true or false"),
        ({"UNDERSTUDY_MODELS_FILE": "/no/such/file.yaml"}, "UNDERSTUDY_MODELS_FILE: no such file"),
        ({"UNDERSTUDY_CONFIG": "/no/such/config.yaml"}, "UNDERSTUDY_CONFIG: cannot read"),
        ({"UNDERSTUDY_BATCH_MIN_SECONDS": "-1"}, "UNDERSTUDY_BATCH_MIN_SECONDS: must be zero or a positive number"),
        ({"UNDERSTUDY_BATCH_EXPIRE_SECONDS": "0"}, "UNDERSTUDY_BATCH_EXPIRE_SECONDS: must be a positive number"),
    ],
)
def test_mistakes_name_the_setting(environ, named):
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    assert str(error.value).startswith(named)
    assert "\n" not in str(error.value)


def test_unknown_setting_in_file(tmp_path):
    config = tmp_path / "understudy.yaml"
    config.write_text("backnd: echo\n")
    with pytest.raises(ConfigError, match="backnd: unknown setting"):
        load_settings({"UNDERSTUDY_CONFIG": str(config)})


def test_an_unknown_backend_is_named(monkeypatch):
    monkeypatch.setenv("UNDERSTUDY_BACKEND", "nope")
    with pytest.raises(ConfigError) as error:
        create_app()
    assert str(error.value).startswith("UNDERSTUDY_BACKEND: unknown backend 'nope'; known backends: echo")


def test_the_proxy_is_given_its_limits_from_the_settings():
    defaults = load_settings({})
    assert (defaults.upstream_max_body_bytes, defaults.upstream_max_event_bytes) == (32 << 20, 16 << 20)
    limits = {"upstream_max_body_bytes": 1000, "upstream_max_event_bytes": 100}
    backend = create_app({"backend": "proxy", "upstream_url": "http://127.0.0.1:9", **limits}).app.extensions[
        BACKEND_KEY
    ]
    assert (backend.upstream.max_body_bytes, backend.max_event_bytes) == (1000, 100)


@pytest.fixture
def temp_folder(tmp_path, monkeypatch):
    """tempfile.gettempdir() for the test, where a process's own state file goes; no state file set."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("UNDERSTUDY_STATE_FILE", raising=False)
    return tmp_path


def test_a_single_process_app_removes_its_own_state_file(temp_folder):
    app = create_app({"backend": "proxy", "upstream_url": "http://127.0.0.1:9"})  # journaled: it has a store
    assert [path.name for path in temp_folder.iterdir()] != []
    del app
    gc.collect()
    assert list(temp_folder.iterdir()) == []


def test_checking_the_configuration_closes_what_it_opened(temp_folder, monkeypatch):
    script = temp_folder / "script.yaml"
    script.write_text("- reply: {text: hi}\n")
    monkeypatch.setenv("UNDERSTUDY_BACKEND", "scripted")
    monkeypatch.setenv("UNDERSTUDY_SCRIPT", str(script))
    check_configuration()
    assert [path.name for path in temp_folder.iterdir()] == ["script.yaml"]
