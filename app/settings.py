"""Settings: every option the server reads, its environment variable, default and meaning.

Settings come in layers, later ones winning: the defaults below, then a YAML
file named by UNDERSTUDY_CONFIG (keys are the setting names, e.g.
`backend: echo`), then the environment, then overrides passed to
`create_app` (tests use these). A bad value stops start-up with a
`ConfigError` whose one line names the setting. Settings know nothing of the
backends: what a setting means to a backend, the composition root
(`app/__init__.py`) decides.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from app.ratelimits.config import RateLimits, parse_rate_limits
from backends.state.scopes import is_scope_name


class ConfigError(Exception):
    """A setting is wrong; the message names it and says why."""


def _text(value: Any) -> str:
    return str(value).strip()


def _keys(value: Any) -> frozenset[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return frozenset(str(item).strip() for item in items if str(item).strip())


def _aws_credentials(value: Any) -> tuple[tuple[str, str], ...]:
    """`ACCESS_KEY_ID:SECRET` pairs, comma-separated (or a mapping, from a settings file), as (key, secret) pairs."""
    pairs = value.items() if isinstance(value, Mapping) else (item.partition(":")[::2] for item in _keys(value))
    credentials = {str(key).strip(): str(secret).strip() for key, secret in pairs}
    if not all(credentials.values()) or not all(credentials):
        raise ValueError("must be ACCESS_KEY_ID:SECRET pairs, comma-separated")
    return tuple(sorted(credentials.items()))


def _state_url(value: Any) -> str:
    """`redis://HOST:PORT/DB` (`rediss://` with TLS, `unix:///path.sock?db=N`) or `sqlite:///PATH`."""
    text = _text(value)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme == "sqlite" and parts.path and not parts.netloc:
        return text
    if parts.scheme == "unix" and parts.path:
        return text
    try:
        parts.port  # noqa: B018 - read for its ValueError: a port that is not a number
    except ValueError:
        parts = parts._replace(scheme="")
    database = parts.path.strip("/")
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or (database and not database.isdigit()):
        raise ValueError("must be redis://HOST:PORT/DB, rediss://…, unix:///PATH or sqlite:///PATH")
    return text


def _without_password(value: Any) -> str:
    """A URL as it may be quoted back: any password in it replaced by ***."""
    return repr(re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", str(value)))


def _key_prefix(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", text):
        raise ValueError("must be 1-64 letters, digits and _.:- (no braces: they make Redis Cluster's hash tags)")
    return text


def _key_scopes(value: Any) -> tuple[tuple[str, str], ...]:
    """`KEY=SCOPE` pairs, comma-separated (or a mapping, from a settings file): the scope each API key works in."""
    pairs = value.items() if isinstance(value, Mapping) else (item.partition("=")[::2] for item in _keys(value))
    scopes = {str(key).strip(): str(scope).strip() for key, scope in pairs}
    if not all(scopes) or not all(is_scope_name(scope) for scope in scopes.values()):
        raise ValueError("must be KEY=SCOPE pairs, comma-separated, each scope 1-64 letters, digits and _.-")
    return tuple(sorted(scopes.items()))


def _positive_int(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or number != float(value):
        raise ValueError("must be a positive whole number")
    return number


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _seconds(value: Any) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a positive number of seconds")
    return number


def _seconds_or_zero(value: Any) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError("must be zero or a positive number of seconds")
    return number


def _url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return text


def _path(value: Any) -> Path:
    return Path(str(value)).expanduser()


def _file(value: Any) -> Path:
    path = _path(value)
    if not path.is_file():
        raise ValueError("no such file")
    return path


def setting(
    default: Any, variable: str, parse: Callable[[Any], Any], meaning: str, *, shown: Callable[[Any], str] = repr
) -> Any:
    """A settings field: its default, environment variable, parser and one-line meaning; `shown` says how a bad
    value is quoted back (a URL without its password)."""
    metadata = {"variable": variable, "parse": parse, "meaning": meaning, "shown": shown}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """The server's settings; the README's configuration table follows this class."""

    backend: str = setting(
        "echo", "UNDERSTUDY_BACKEND", _text, "which backend answers: echo (default), scripted or proxy"
    )
    api_keys: frozenset[str] = setting(
        frozenset(), "UNDERSTUDY_API_KEYS", _keys, "comma-separated keys that may call; unset, any non-empty key"
    )
    aws_credentials: tuple[tuple[str, str], ...] = setting(
        (),
        "UNDERSTUDY_AWS_CREDENTIALS",
        _aws_credentials,
        "ACCESS_KEY_ID:SECRET pairs whose AWS signatures (SigV4) are verified; unset, any well-formed one passes",
    )
    max_body_bytes: int = setting(
        32 * 1024 * 1024, "UNDERSTUDY_MAX_BODY_BYTES", _positive_int, "largest request body accepted"
    )
    max_file_bytes: int = setting(
        500 * 1024 * 1024, "UNDERSTUDY_MAX_FILE_BYTES", _positive_int, "largest file the Files API accepts"
    )
    public_url: str | None = setting(
        None,
        "UNDERSTUDY_PUBLIC_URL",
        _url,
        "this server's URL as clients reach it, for the URLs it hands out (results_url); default: from the request",
    )
    models_file: Path | None = setting(
        None, "UNDERSTUDY_MODELS_FILE", _file, "YAML model catalogue for the models routes; default: the shipped one"
    )
    allow_unknown_fields: bool = setting(
        False, "UNDERSTUDY_ALLOW_UNKNOWN_FIELDS", _flag, "accept top-level request fields the spec does not know"
    )
    any_model: bool = setting(
        False, "UNDERSTUDY_ANY_MODEL", _flag, "echo: answer any model name, not only the catalogue's unretired ones"
    )
    threads: int = setting(256, "UNDERSTUDY_THREADS", _positive_int, "threads per worker for Flask handlers")
    validate_responses: bool = setting(
        False, "UNDERSTUDY_VALIDATE_RESPONSES", _flag, "check JSON responses against openapi.yaml (tests)"
    )
    script: Path | None = setting(None, "UNDERSTUDY_SCRIPT", _path, "the scripted backend's YAML script")
    state_file: Path | None = setting(
        None, "UNDERSTUDY_STATE_FILE", _path, "SQLite file for sequences and the journal, shared by workers"
    )
    state_url: str | None = setting(
        None,
        "UNDERSTUDY_STATE_URL",
        _state_url,
        "where shared state lives: redis://HOST:PORT/DB for several hosts, sqlite:///PATH; default: the state file",
        shown=_without_password,
    )
    state_prefix: str = setting(
        "understudy", "UNDERSTUDY_STATE_PREFIX", _key_prefix, "Redis: the prefix of every key this server writes"
    )
    key_scopes: tuple[tuple[str, str], ...] = setting(
        (),
        "UNDERSTUDY_KEY_SCOPES",
        _key_scopes,
        "KEY=SCOPE pairs: a request with that API key works in that scope (else the x-understudy-scope header's)",
    )
    files_dir: Path | None = setting(
        None, "UNDERSTUDY_FILES_DIR", _path, "where uploaded files are kept; default: beside the state file"
    )
    journal: bool | None = setting(
        None, "UNDERSTUDY_JOURNAL", _flag, "keep a journal of requests; default: on for every backend but echo"
    )
    journal_max_mb: int = setting(
        256, "UNDERSTUDY_JOURNAL_MAX_MB", _positive_int, "the journal keeps its newest entries within this many MB"
    )
    journal_max_entries: int = setting(
        100_000, "UNDERSTUDY_JOURNAL_MAX_ENTRIES", _positive_int, "and at most this many entries"
    )
    journal_max_body_bytes: int = setting(
        256 * 1024,
        "UNDERSTUDY_JOURNAL_MAX_BODY_BYTES",
        _positive_int,
        "the most body an entry keeps whole; a longer one keeps its size and first 4 KB",
    )
    admin_key: str | None = setting(
        None, "UNDERSTUDY_ADMIN_KEY", _text, "key for the /_understudy admin routes, which are off without one"
    )
    metrics: bool = setting(
        False,
        "UNDERSTUDY_METRICS",
        _flag,
        "serve Prometheus metrics at /metrics, which needs the admin key as the /_understudy routes do",
    )
    upstream_url: str = setting(
        "https://api.anthropic.com", "UNDERSTUDY_UPSTREAM_URL", _url, "where the proxy backend forwards to"
    )
    upstream_api_key: str | None = setting(
        None, "UNDERSTUDY_UPSTREAM_API_KEY", _text, "key the proxy holds for the upstream; unset, clients' keys pass"
    )
    upstream_connect_timeout: float = setting(
        10.0, "UNDERSTUDY_UPSTREAM_CONNECT_TIMEOUT", _seconds, "seconds to connect to the upstream (then 502/504)"
    )
    upstream_read_timeout: float = setting(
        600.0, "UNDERSTUDY_UPSTREAM_READ_TIMEOUT", _seconds, "seconds the upstream may stay silent (then 504)"
    )
    upstream_connections: int = setting(
        100, "UNDERSTUDY_UPSTREAM_CONNECTIONS", _positive_int, "most open connections to the upstream per worker"
    )
    # Bounds on what the proxy holds of one upstream answer, so that a broken or hostile upstream cannot fill
    # a worker's memory. Envoy, which passes bytes on as they come, caps its buffers at 1 MiB per connection;
    # this proxy must hold a whole body or event to read it, so each bound is the largest legitimate size
    # with room to spare. A whole body: 32 MiB, the real API's own limit on a Messages request (and this
    # server's, UNDERSTUDY_MAX_BODY_BYTES); an answer is bounded by its output tokens and stays far below
    # (128,000 tokens of text are under 1 MB). One event: 16 MiB; most carry a few tokens, the largest start
    # a content block whole (a server tool's result, a fetched document), and none outgrows the whole answer.
    upstream_max_body_bytes: int = setting(
        32 * 1024 * 1024,
        "UNDERSTUDY_UPSTREAM_MAX_BODY_BYTES",
        _positive_int,
        "largest upstream answer the proxy reads (then 502)",
    )
    upstream_max_event_bytes: int = setting(
        16 * 1024 * 1024,
        "UNDERSTUDY_UPSTREAM_MAX_EVENT_BYTES",
        _positive_int,
        "largest single event of an upstream stream (then an error event)",
    )
    header_timeout: float = setting(
        10.0,
        "UNDERSTUDY_HEADER_TIMEOUT",
        _seconds,
        "seconds a new connection has to send its first request's headers (then 408, or closed if silent)",
    )
    internals: bool = setting(
        True,
        "UNDERSTUDY_INTERNALS",
        _flag,
        "the speed-ups that use private Connexion, Flask and gunicorn hooks (app/internals.py)",
    )
    record: Path | None = setting(
        None, "UNDERSTUDY_RECORD", _path, "proxy: append every exchange to this script, for the scripted backend"
    )
    max_batch_bytes: int = setting(
        256 * 1024 * 1024, "UNDERSTUDY_MAX_BATCH_BYTES", _positive_int, "largest Message Batch create body accepted"
    )
    batch_min_seconds: float = setting(
        0.0,
        "UNDERSTUDY_BATCH_MIN_SECONDS",
        _seconds_or_zero,
        "a Message Batch takes at least this long: its requests are answered evenly across it",
    )
    batch_expire_seconds: float = setting(
        24 * 3600.0,
        "UNDERSTUDY_BATCH_EXPIRE_SECONDS",
        _seconds,
        "a Message Batch expires this long after it is created: requests not yet answered are `expired`",
    )
    batch_lease_seconds: float = setting(
        10.0,
        "UNDERSTUDY_BATCH_LEASE_SECONDS",
        _seconds,
        "a worker's claim on batch requests lasts this long unrenewed; then another worker takes them over",
    )
    rate_limits: RateLimits | None = setting(
        None,
        "UNDERSTUDY_RATE_LIMITS",
        parse_rate_limits,
        "rate limits as the API's, e.g. rpm=50,itpm=30000,otpm=8000 (per key, scope, model class: a settings file)",
    )

    @property
    def journal_on(self) -> bool:
        """Whether requests are journaled: as set, or by default for every backend but echo."""
        return self.backend != "echo" if self.journal is None else self.journal


SETTINGS = {item.name: item.metadata for item in fields(Settings)}
CONFIG_FILE_VARIABLE = "UNDERSTUDY_CONFIG"


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the defaults, the config file, the environment and `overrides`, checked."""
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[str, Any]] = {}
    config_file = environ.get(CONFIG_FILE_VARIABLE)
    if config_file:
        for name, value in _read_config_file(Path(config_file)).items():
            raw[name] = (f"{config_file}: {name}", value)
    for name, meta in SETTINGS.items():
        variable = meta["variable"]
        if variable in environ:
            raw[name] = (variable, environ[variable])
    for name, value in (overrides or {}).items():
        raw[name] = (name, value)

    values = {}
    for name, (source, value) in raw.items():
        if name not in SETTINGS:
            raise ConfigError(f"{source}: unknown setting; known settings: {', '.join(SETTINGS)}")
        try:
            values[name] = SETTINGS[name]["parse"](value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{source}: {error} (got {SETTINGS[name]['shown'](value)})") from None
    settings = Settings(**values)
    _check(settings)
    return settings


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: cannot read {path}: {error}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: {path} must hold a mapping of setting names to values")
    return content


def _check(settings: Settings) -> None:
    if settings.upstream_api_key and not settings.api_keys and settings.backend == "proxy":
        raise ConfigError(
            f"{SETTINGS['api_keys']['variable']}: must be set when the proxy holds the upstream key "
            f"({SETTINGS['upstream_api_key']['variable']}), or anyone could spend it"
        )
