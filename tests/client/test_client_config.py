"""Where the client finds its URL and key: arguments, environment, profile file."""

from __future__ import annotations

from pathlib import Path

import pytest

from matih_ml.client import ClientConfig, ConfigError, MatihClient, config_path
from matih_ml.errors import ValidationError

KEY_A = "mk_aaaaaaaaaaaaaaaa_secret-a"
KEY_B = "mk_bbbbbbbbbbbbbbbb_secret-b"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty HOME, no XDG_CONFIG_HOME, and none of the client's variables."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    for name in (
        "XDG_CONFIG_HOME",
        "MATIH_URL",
        "MATIH_API_KEY",
        "MATIH_PROFILE",
        "MATIH_CONFIG_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return folder


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_nothing_configured_is_a_clear_error_and_creates_nothing(home) -> None:
    with pytest.raises(ConfigError) as err:
        MatihClient()
    msg = err.value.message
    expected = home / ".config" / "matih-ml" / "config.toml"
    for part in ("url=", "MATIH_URL", "api_key=", "MATIH_API_KEY", str(expected)):
        assert part in msg, msg
    assert "the file does not exist" in msg and "'default'" in msg
    assert err.value.details["missing"] == ["url", "api_key"]
    assert isinstance(err.value, ValidationError)
    assert list(home.iterdir()) == []


def test_only_the_missing_part_is_named(home, monkeypatch) -> None:
    monkeypatch.setenv("MATIH_URL", "http://ml.example:8080")
    with pytest.raises(ConfigError) as err:
        ClientConfig.resolve()
    assert err.value.details["missing"] == ["api_key"]
    assert "MATIH_API_KEY" in err.value.message and "MATIH_URL" not in err.value.message


def test_environment_alone(home, monkeypatch) -> None:
    monkeypatch.setenv("MATIH_URL", "http://ml.example:8080/")
    monkeypatch.setenv("MATIH_API_KEY", KEY_A)
    cfg = ClientConfig.resolve()
    assert (cfg.url, cfg.api_key, cfg.profile) == ("http://ml.example:8080", KEY_A, None)


def test_arguments_win_over_environment_and_file(home, monkeypatch) -> None:
    _write(config_path(), f'[default]\nurl = "http://file:1"\napi_key = "{KEY_B}"\n')
    monkeypatch.setenv("MATIH_URL", "http://env:2")
    monkeypatch.setenv("MATIH_API_KEY", KEY_B)
    cfg = ClientConfig.resolve("http://arg:3", KEY_A)
    assert (cfg.url, cfg.api_key) == ("http://arg:3", KEY_A)


def test_environment_wins_over_the_file_field_by_field(home, monkeypatch) -> None:
    _write(config_path(), f'[default]\nurl = "http://file:1"\napi_key = "{KEY_B}"\n')
    monkeypatch.setenv("MATIH_URL", "http://env:2")
    cfg = ClientConfig.resolve()
    assert (cfg.url, cfg.api_key, cfg.profile) == ("http://env:2", KEY_B, "default")


def test_xdg_config_home_and_a_profile_chosen_by_environment(home, tmp_path, monkeypatch) -> None:
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    path = _write(
        xdg / "matih-ml" / "config.toml",
        f'[default]\nurl = "http://dev:1"\napi_key = "{KEY_A}"\n\n'
        f'[staging]\nurl = "https://staging.example/api/v1"\napi_key = "{KEY_B}"\n',
    )
    assert config_path() == path
    assert ClientConfig.resolve().url == "http://dev:1"
    monkeypatch.setenv("MATIH_PROFILE", "staging")
    cfg = ClientConfig.resolve()
    # A pasted API address is taken as the server's base URL.
    assert (cfg.url, cfg.api_key, cfg.profile) == ("https://staging.example", KEY_B, "staging")
    assert ClientConfig.resolve(profile="default").api_key == KEY_A  # the argument wins
    assert list(home.iterdir()) == []


def test_a_named_profile_that_is_not_there_is_an_error(home) -> None:
    _write(config_path(), f'[default]\nurl = "http://dev:1"\napi_key = "{KEY_A}"\n')
    with pytest.raises(ConfigError) as err:
        ClientConfig.resolve(profile="prod")
    assert "'prod'" in err.value.message and "profiles there: default" in err.value.message


def test_a_named_profile_without_a_file_is_an_error(home) -> None:
    with pytest.raises(ConfigError) as err:
        ClientConfig.resolve("http://x:1", KEY_A, profile="prod")
    assert "does not exist" in err.value.message
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('url = "http://x:1"\n', "outside a profile"),
        ('[default]\nurl = "http://x:1"\napi-key = "k"\n', "unknown keys ['api-key']"),
        ("[default]\nurl = 8080\n", "url must be a string"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_a_bad_profile_file_is_named(home, text, says) -> None:
    path = _write(config_path(), text)
    with pytest.raises(ConfigError) as err:
        ClientConfig.resolve()
    assert says in err.value.message and str(path) in err.value.message


def test_a_profile_without_the_key_says_so(home) -> None:
    _write(config_path(), '[default]\nurl = "http://x:1"\n')
    with pytest.raises(ConfigError) as err:
        ClientConfig.resolve()
    assert "the [default] profile has no api_key" in err.value.message


def test_matih_config_file_names_the_file(home, tmp_path, monkeypatch) -> None:
    path = _write(tmp_path / "ci.toml", f'[default]\nurl = "http://ci:1"\napi_key = "{KEY_A}"\n')
    monkeypatch.setenv("MATIH_CONFIG_FILE", str(path))
    assert ClientConfig.resolve().url == "http://ci:1"


@pytest.mark.parametrize("url", ["ml.example:8080", "ftp://x", "http://", ""])
def test_a_url_that_is_not_http_is_refused(home, url) -> None:
    with pytest.raises(ConfigError):
        ClientConfig(url or " ", KEY_A)


def test_the_key_never_shows_in_repr(home) -> None:
    cfg = ClientConfig("http://x:1", KEY_A)
    assert "secret-a" not in repr(cfg) and "aaaaaaaaaaaaaaaa" in repr(cfg)
    assert "secret-a" not in repr(MatihClient(config=cfg))
