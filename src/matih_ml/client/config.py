"""Where the client finds its server and key: arguments, then the environment, then a
profile file, as the aws and databricks CLIs do.

Each of ``url`` and ``api_key`` is taken from the first place that has it:

1. the argument (``MatihClient(url=..., api_key=...)``);
2. the environment: ``MATIH_URL``, ``MATIH_API_KEY``;
3. the profile file, in the profile named by ``profile=``, else by ``MATIH_PROFILE``,
   else ``default``.

The profile file is ``$MATIH_CONFIG_FILE`` if set, else
``$XDG_CONFIG_HOME/matih-ml/config.toml``, else ``~/.config/matih-ml/config.toml``.
Each profile is a top-level TOML table of its own name, with two keys::

    [default]
    url = "http://127.0.0.1:8080"
    api_key = "mk_0123456789abcdef_..."

    [staging]
    url = "https://ml.staging.example.com"
    api_key = "mk_..."

(Plain ``[NAME]`` tables, like ``~/.aws/credentials`` and ``~/.databrickscfg``: one
level, nothing to nest.) The file is read only when an argument or the environment leaves
something out, or when a profile is named; a named profile that is not in the file is an
error. Nothing here creates a file or a folder.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from matih_ml.errors import ValidationError

ENV_URL = "MATIH_URL"
ENV_API_KEY = "MATIH_API_KEY"
ENV_PROFILE = "MATIH_PROFILE"
ENV_CONFIG_FILE = "MATIH_CONFIG_FILE"
DEFAULT_PROFILE = "default"
_KEYS = ("url", "api_key")


class ConfigError(ValidationError):
    """The client's configuration is missing or not valid; the message says where it
    looked and what to set."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The profile file's path (which need not exist).

    Args:
        environ: The environment to read (``os.environ`` by default).
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_CONFIG_FILE):
        return Path(env[ENV_CONFIG_FILE]).expanduser()
    xdg = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec: a relative XDG_CONFIG_HOME is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "matih-ml" / "config.toml"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".config" / "matih-ml" / "config.toml"


def _mask(key: str) -> str:
    # mk_<16 hex id>_<secret>: the id names the key without giving it away.
    parts = key.split("_")
    if len(parts) == 3 and parts[0] == "mk":
        return f"mk_{parts[1]}_***"
    return "***"


@dataclass(frozen=True)
class ClientConfig:
    """A server to call and the key to call it with.

    Attributes:
        url: The server's base URL (``http://host:8080``), without a trailing ``/``.
        api_key: The API key (or a JWT), sent as ``Authorization: Bearer``.
        profile: The profile that supplied a value, if one did.
    """

    url: str
    api_key: str = field(repr=False)
    profile: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _normalise_url(self.url))
        if not self.api_key or not self.api_key.strip():
            raise ConfigError("The API key is empty.", details={"field": "api_key"})

    def __repr__(self) -> str:
        return (
            f"ClientConfig(url={self.url!r}, api_key={_mask(self.api_key)!r}, "
            f"profile={self.profile!r})"
        )

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        """The configuration from the arguments, the environment and the profile file.

        Args:
            url: The server's base URL; wins over everything else.
            api_key: The API key; wins over everything else.
            profile: The profile to read from the file (else ``MATIH_PROFILE``, else
                ``default``).
            environ: The environment to read (``os.environ`` by default).

        Returns:
            The configuration.

        Raises:
            ConfigError: The URL or the key is found nowhere (the message lists where it
                looked), a named profile is not in the file, or the file is not valid.
        """
        env = os.environ if environ is None else environ
        values: dict[str, str | None] = {
            "url": url or env.get(ENV_URL) or None,
            "api_key": api_key or env.get(ENV_API_KEY) or None,
        }
        named = profile or env.get(ENV_PROFILE) or None
        name = named or DEFAULT_PROFILE
        path = config_path(env)
        used: str | None = None
        state = "not read"  # what became of the file, for the error message
        if named is not None or None in values.values():
            found, state = _read_profile(path, name, required=named is not None)
            for key in _KEYS:
                if values[key] is None and found.get(key):
                    values[key] = found[key]
                    used = name
        missing = [k for k in _KEYS if values[k] is None]
        if missing:
            raise _missing(missing, path, name, state)
        assert values["url"] is not None and values["api_key"] is not None
        return cls(values["url"], values["api_key"], used)


def _normalise_url(url: str) -> str:
    clean = url.strip().rstrip("/")
    parts = urlsplit(clean)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"The server URL {url!r} is not an http:// or https:// URL with a host.",
            details={"field": "url", "url": url},
        )
    # The server's base URL is wanted; a copied API address works too.
    return clean.removesuffix("/api/v1")


def _read_profile(path: Path, name: str, *, required: bool) -> tuple[dict[str, str], str]:
    """The profile's keys, and what became of the file (for an error message)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"Profile {name!r} was asked for, but the profile file {path} does not exist.",
                details={"field": "profile", "profile": name, "config_file": str(path)},
            ) from None
        return {}, "the file does not exist"
    except OSError as exc:
        raise ConfigError(
            f"The profile file {path} cannot be read: {exc.strerror or exc}.",
            details={"config_file": str(path)},
        ) from None
    try:
        doc: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"The profile file {path} is not valid TOML: {exc}.",
            details={"config_file": str(path)},
        ) from None
    stray = sorted(k for k, v in doc.items() if not isinstance(v, dict))
    if stray:
        raise ConfigError(
            f"The profile file {path} has keys outside a profile ({', '.join(stray)}); put "
            f"them under a [{DEFAULT_PROFILE}] (or [NAME]) table.",
            details={"config_file": str(path), "keys": stray},
        )
    if name not in doc:
        if required:
            known = ", ".join(sorted(doc)) or "none"
            raise ConfigError(
                f"Profile {name!r} is not in the profile file {path} (profiles there: {known}).",
                details={"field": "profile", "profile": name, "config_file": str(path)},
            )
        return {}, f"the file has no [{name}] profile"
    section = doc[name]
    unknown = sorted(set(section) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"Profile {name!r} in {path} has unknown keys {unknown}; the keys are url and api_key.",
            details={"profile": name, "config_file": str(path), "keys": unknown},
        )
    bad = [k for k in _KEYS if k in section and not isinstance(section[k], str)]
    if bad:
        raise ConfigError(
            f"Profile {name!r} in {path}: {bad[0]} must be a string.",
            details={"profile": name, "config_file": str(path), "field": bad[0]},
        )
    return {k: section[k] for k in _KEYS if k in section}, "read"


def _missing(missing: list[str], path: Path, profile: str, state: str) -> ConfigError:
    what = {"url": "matih-ml server URL", "api_key": "API key"}
    arg = {"url": "url=", "api_key": "api_key="}
    env = {"url": ENV_URL, "api_key": ENV_API_KEY}
    parts = []
    for key in missing:
        found = f"the [{profile}] profile has no {key}" if state == "read" else state
        parts.append(
            f"No {what[key]}: looked for the {arg[key]} argument, the {env[key]} environment "
            f"variable, and {key!r} in profile {profile!r} of {path} ({found})."
        )
    hint = f" Set {' and '.join(env[k] for k in missing)}, or add them to [{profile}] in {path}."
    return ConfigError(
        " ".join(parts) + hint,
        details={
            "missing": missing,
            "profile": profile,
            "config_file": str(path),
            "looked_in": ["arguments", "environment", str(path)],
        },
    )
