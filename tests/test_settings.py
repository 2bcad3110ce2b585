"""Settings: parsed once from TOML and SEALDROP_* variables; bad values name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealdrop.cli import build_parser
from sealdrop.settings import (
    GiB,
    KiB,
    Listen,
    MiB,
    Settings,
    SettingsError,
    from_command_line,
    load_settings,
)

REQUIRED = {"SEALDROP_SPOOL_DIR": "/srv/spool", "SEALDROP_PUBLIC_KEY_FILE": "/etc/reviewer.pub"}


def test_defaults_from_the_two_required_variables() -> None:
    settings = load_settings(REQUIRED, None)
    assert settings.spool_dir == Path("/srv/spool")
    assert settings.public_key_file == Path("/etc/reviewer.pub")
    assert settings.max_body_bytes == 2 * GiB
    assert settings.max_files == 20
    assert settings.max_message_chars == 100_000
    assert settings.max_part_header_bytes == 8 * KiB
    assert settings.reserve_bytes == 512 * MiB
    assert settings.listen == Listen("127.0.0.1", 8080)
    assert settings.listen.bind == "127.0.0.1:8080"
    assert settings.accepting is True


def test_settings_are_frozen() -> None:
    settings = load_settings(REQUIRED, None)
    with pytest.raises(AttributeError):
        settings.max_files = 3  # type: ignore[misc]


def test_toml_file_and_environment_with_environment_winning(tmp_path: Path) -> None:
    config = tmp_path / "sealdrop.toml"
    config.write_text(
        'spool_dir = "/a"\npublic_key_file = "/k.pub"\nmax_files = 5\n'
        'max_body_bytes = "1 GiB"\nreserve_bytes = 0\naccepting = false\n'
        'listen = "unix:/run/sealdrop.sock"\n'
    )
    settings = load_settings({"SEALDROP_MAX_FILES": "7", "SEALDROP_SPOOL_DIR": "/b"}, config)
    assert settings.spool_dir == Path("/b")
    assert settings.public_key_file == Path("/k.pub")
    assert settings.max_files == 7
    assert settings.max_body_bytes == GiB
    assert settings.reserve_bytes == 0
    assert settings.accepting is False
    assert settings.listen.bind == "unix:/run/sealdrop.sock"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1048576", MiB), ("512 MiB", 512 * MiB), ("3GiB", 3 * GiB), ("64KiB", 64 * KiB)],
)
def test_sizes_accept_binary_units(value: str, expected: int) -> None:
    assert load_settings({**REQUIRED, "SEALDROP_MAX_BODY_BYTES": value}).max_body_bytes == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("no", False), ("0", False), ("ON", True)],
)
def test_accepting_flag(value: str, expected: bool) -> None:
    assert load_settings({**REQUIRED, "SEALDROP_ACCEPTING": value}).accepting is expected


@pytest.mark.parametrize(
    ("value", "bind"),
    [
        ("127.0.0.1:9000", "127.0.0.1:9000"),
        ("[::1]:80", "[::1]:80"),
        ("127.0.0.2:0", "127.0.0.2:0"),
    ],
)
def test_loopback_listen_addresses(value: str, bind: str) -> None:
    assert load_settings({**REQUIRED, "SEALDROP_LISTEN": value}).listen.bind == bind


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0.0.0.0:8080", "not a loopback address"),
        ("192.168.1.5:8080", "not a loopback address"),
        ("[::]:8080", "not a loopback address"),
        ("localhost:8080", "only a loopback IP address"),
        ("127.0.0.1", "not HOST:PORT"),
        ("127.0.0.1:99999", "above 65535"),
        ("unix:relative.sock", "not absolute"),
    ],
)
def test_non_loopback_or_broken_listen_is_refused(value: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**REQUIRED, "SEALDROP_LISTEN": value})
    message = str(caught.value)
    assert says in message
    assert "SEALDROP_LISTEN" in message
    assert "127.0.0.1:PORT" in message


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SEALDROP_MAX_FILES", "many", "not a whole number"),
        ("SEALDROP_MAX_FILES", "-1", "not a whole number"),
        ("SEALDROP_MAX_BODY_BYTES", "2 GB", "not a size"),
        ("SEALDROP_MAX_BODY_BYTES", "10", "outside"),
        ("SEALDROP_MAX_PART_HEADER_BYTES", "2 MiB", "outside"),
        ("SEALDROP_MAX_MESSAGE_CHARS", "0", "outside"),
        ("SEALDROP_ACCEPTING", "maybe", "not true or false"),
        ("SEALDROP_SPOOL_DIR", "", "empty"),
    ],
)
def test_bad_values_name_the_setting_the_variable_and_the_fix(
    variable: str, value: str, says: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**REQUIRED, variable: value})
    message = str(caught.value)
    name = variable.removeprefix("SEALDROP_").lower()
    assert f"setting {name} ({variable})" in message
    assert says in message
    assert "give " in message  # the fix


def test_bad_toml_value_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("max_files = true\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(REQUIRED, config)
    assert f"setting max_files (config file {config})" in str(caught.value)


def test_missing_required_setting_says_how_to_give_it() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"SEALDROP_SPOOL_DIR": "/s"})
    message = str(caught.value)
    assert "public_key_file is missing" in message
    assert "SEALDROP_PUBLIC_KEY_FILE" in message


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("max_file = 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'max_file'"):
        load_settings(REQUIRED, config)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("max_files = = 3\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(REQUIRED, broken)
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(REQUIRED, tmp_path / "absent.toml")


def test_unrelated_environment_is_ignored() -> None:
    settings = load_settings({**REQUIRED, "HOME": "/root", "SEALDROP_SOMETHING_ELSE": "x"})
    assert settings.max_files == 20


def parsed(*argv: str, env: dict[str, str] | None = None) -> Settings:
    args = build_parser().parse_args(["serve", *argv])
    return from_command_line(args, env or {})


def test_flags_win_over_variables_which_win_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'spool_dir = "/file"\npublic_key_file = "/k.pub"\nstate_dir = "/file-state"\n'
    )
    env = {"SEALDROP_SPOOL_DIR": "/env", "SEALDROP_STATE_DIR": "/env-state"}
    settings = parsed("--config", str(config), "--state", "/flag-state", env=env)
    assert settings.spool_dir == Path("/env")
    assert settings.state_dir == Path("/flag-state")
    assert settings.public_key_file == Path("/k.pub")


def test_every_settings_flag_is_taken_by_serve_and_check_and_parsed_like_the_rest() -> None:
    for command in ("serve", "check"):
        args = build_parser().parse_args([command, "--spool", "/s", "--public-key", "/k"])
        assert from_command_line(args, {}).spool_dir == Path("/s")
    with pytest.raises(SettingsError) as caught:
        parsed("--spool", "/s", "--public-key", "/k", "--listen", "0.0.0.0:80")
    assert "setting listen (--listen)" in str(caught.value)


def test_a_missing_setting_names_its_flag() -> None:
    with pytest.raises(SettingsError) as caught:
        parsed("--public-key", "/k")
    assert "or as --spool" in str(caught.value)


def test_the_tor_control_password_is_a_setting_never_shown() -> None:
    settings = load_settings({**REQUIRED, "SEALDROP_TOR_CONTROL_PASSWORD": "hunter2-secret"})
    assert settings.tor_control_password == "hunter2-secret"
    assert "hunter2" not in repr(settings)
    with pytest.raises(SettingsError) as caught:
        load_settings({**REQUIRED, "SEALDROP_TOR_CONTROL_PASSWORD": " "})
    assert "SEALDROP_TOR_CONTROL_PASSWORD" in str(caught.value)
