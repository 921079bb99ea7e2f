"""Settings from the environment and `.env` (the README's "Settings" table)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.pixverse.rules import Quality
from bot.settings import Settings, SettingsProblem, load_settings

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "discord-token-5b1e9d"
KEY = "pixverse-key-77c0aa"
WEBHOOK_SECRET = "webhook-secret-90ff12"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No variable of the real environment and no stray `.env` may reach a test."""
    for name in list(os.environ):
        # Variable names are matched case-insensitively, so `discord_token` counts too.
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("PIXVERSE_API_KEY", KEY)


def problem_for(**variables: str) -> str:
    """The SettingsProblem message for these variables on top of the required ones."""
    env = {"DISCORD_TOKEN": TOKEN, "PIXVERSE_API_KEY": KEY, **variables}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises(SettingsProblem) as caught:
            load_settings(env_file=None)
    return str(caught.value)


# -- values ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("required")
def test_defaults_match_readme() -> None:
    settings = load_settings(env_file=None)

    assert settings.pixverse_base_url == "https://app-api.pixverse.ai"
    assert settings.database_path == Path("data/bot.sqlite3")
    assert settings.dev_guild_id is None
    assert settings.default_model == "v4.5"  # the shipped catalogue's default_model
    assert settings.default_quality is Quality.P540
    assert settings.default_duration == 5
    assert settings.daily_credits == 150
    assert settings.max_active_jobs == 5
    assert settings.max_jobs_per_user == 2
    assert settings.pixverse_webhook_secret is None
    assert settings.webhook_port is None
    assert settings.pixverse_effects == {}
    assert settings.log_level == "INFO"
    assert settings.budget_daily_credits == 0
    assert settings.moderation_strikes == 3
    assert settings.command_cooldown_seconds == 3
    assert settings.metrics_port is None
    assert settings.metrics_host == "127.0.0.1"


@pytest.mark.usefixtures("required")
def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXVERSE_BASE_URL", "http://127.0.0.1:8765/")
    monkeypatch.setenv("DEV_GUILD_ID", "123456789012345678")
    monkeypatch.setenv("DEFAULT_QUALITY", "720p")
    monkeypatch.setenv("DEFAULT_DURATION", "8")
    monkeypatch.setenv("MAX_ACTIVE_JOBS", "3")
    monkeypatch.setenv("LOG_LEVEL", "debug")

    settings = load_settings(env_file=None)

    assert settings.pixverse_base_url == "http://127.0.0.1:8765"
    assert settings.dev_guild_id == 123456789012345678
    assert settings.default_quality is Quality.P720
    assert settings.default_duration == 8
    assert settings.max_active_jobs == 3
    assert settings.log_level == "DEBUG"


@pytest.mark.usefixtures("required")
def test_effects_are_a_json_object_of_template_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXVERSE_EFFECTS", '{"Kiss kiss": 315446315336768}')

    settings = load_settings(env_file=None)

    assert settings.pixverse_effects == {"Kiss kiss": 315446315336768}


@pytest.mark.usefixtures("required")
def test_the_wallet_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_DAILY_CREDITS", "5000")
    monkeypatch.setenv("MODERATION_STRIKES", "0")
    monkeypatch.setenv("COMMAND_COOLDOWN_SECONDS", "1.5")

    settings = load_settings(env_file=None)

    assert settings.budget_daily_credits == 5000
    assert settings.moderation_strikes == 0
    assert settings.command_cooldown_seconds == 1.5


def test_copied_env_example_keeps_the_readme_defaults(clean_environment: Path) -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    (clean_environment / ".env").write_text(
        example.replace("\nDISCORD_TOKEN=\n", f"\nDISCORD_TOKEN={TOKEN}\n"), encoding="utf-8"
    )

    settings = load_settings(simulate=True)

    assert (
        settings.budget_daily_credits,
        settings.moderation_strikes,
        settings.command_cooldown_seconds,
    ) == (0, 3, 3)


def test_dotenv_in_the_working_directory_is_read(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text(
        f"DISCORD_TOKEN={TOKEN}\nPIXVERSE_API_KEY={KEY}\nMAX_JOBS_PER_USER=4\n", encoding="utf-8"
    )

    settings = load_settings()

    assert settings.discord_token.get_secret_value() == TOKEN
    assert settings.max_jobs_per_user == 4


def test_environment_overrides_dotenv(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_environment / ".env").write_text(
        f"DISCORD_TOKEN={TOKEN}\nPIXVERSE_API_KEY={KEY}\nDAILY_CREDITS=90\n", encoding="utf-8"
    )
    monkeypatch.setenv("DAILY_CREDITS", "300")

    assert load_settings().daily_credits == 300


def test_env_file_none_ignores_dotenv(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text(f"DISCORD_TOKEN={TOKEN}\n", encoding="utf-8")

    with pytest.raises(SettingsProblem, match="DISCORD_TOKEN"):
        load_settings(simulate=True, env_file=None)


def test_copied_env_example_with_a_token_starts_in_simulate_mode(clean_environment: Path) -> None:
    # .env.example leaves optional variables empty (`DEV_GUILD_ID=`): empty means unset.
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    filled = example.replace("\nDISCORD_TOKEN=\n", f"\nDISCORD_TOKEN={TOKEN}\n")
    assert filled != example
    (clean_environment / ".env").write_text(filled, encoding="utf-8")

    settings = load_settings(simulate=True)

    assert settings.dev_guild_id is None
    assert settings.webhook_port is None
    assert settings.metrics_port is None
    assert settings.pixverse_key == ""


# -- required variables ------------------------------------------------------------------------


def test_missing_discord_token_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXVERSE_API_KEY", KEY)

    with pytest.raises(SettingsProblem) as caught:
        load_settings(env_file=None)

    assert str(caught.value) == "DISCORD_TOKEN is required but not set"


def test_api_key_is_required_without_simulate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)

    with pytest.raises(SettingsProblem, match=r"^PIXVERSE_API_KEY is required"):
        load_settings(env_file=None)


def test_empty_api_key_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("PIXVERSE_API_KEY", "")

    with pytest.raises(SettingsProblem, match=r"^PIXVERSE_API_KEY is required"):
        load_settings(env_file=None)


def test_api_key_is_optional_with_simulate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)

    settings = load_settings(simulate=True, env_file=None)

    assert settings.simulate is True
    assert settings.pixverse_key == ""


# -- malformed values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_ACTIVE_JOBS", "abc"),
        ("MAX_ACTIVE_JOBS", "0"),
        ("MAX_JOBS_PER_USER", "-1"),
        ("DAILY_CREDITS", "-5"),
        ("DEFAULT_MODEL", "v9"),
        ("DEFAULT_QUALITY", "4k"),
        ("DEFAULT_DURATION", "6"),
        ("PIXVERSE_EFFECTS", "kiss=1"),
        ("PIXVERSE_EFFECTS", "[1, 2]"),
        ("PIXVERSE_EFFECTS", '{"kiss": "soon"}'),
        ("PIXVERSE_BASE_URL", "app-api.pixverse.ai"),
        ("DEV_GUILD_ID", "-3"),
        ("LOG_LEVEL", "LOUD"),
        ("WEBHOOK_PORT", "70000"),
        ("METRICS_PORT", "70000"),
        ("METRICS_PORT", "0"),
        ("METRICS_PORT", "ninety"),
        ("METRICS_HOST", " "),
        ("BUDGET_DAILY_CREDITS", "-1"),
        ("BUDGET_DAILY_CREDITS", "lots"),
        ("MODERATION_STRIKES", "-2"),
        ("COMMAND_COOLDOWN_SECONDS", "-0.5"),
        ("COMMAND_COOLDOWN_SECONDS", "soon"),
    ],
)
def test_malformed_value_gives_one_line_naming_the_variable(variable: str, value: str) -> None:
    message = problem_for(**{variable: value})

    assert message.startswith(f"{variable} is invalid: ")
    assert "\n" not in message


def test_metrics_port_out_of_range_says_the_range() -> None:
    assert problem_for(METRICS_PORT="65536") == (
        "METRICS_PORT is invalid: must be a port number from 1 to 65535, not 65536"
    )


@pytest.mark.usefixtures("required")
def test_metrics_port_and_host_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PORT", "9108")
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")

    settings = load_settings(env_file=None)

    assert (settings.metrics_port, settings.metrics_host) == (9108, "0.0.0.0")


def test_metrics_port_equal_to_the_webhook_port_is_refused() -> None:
    message = problem_for(
        METRICS_PORT="8080", WEBHOOK_PORT="8080", PIXVERSE_WEBHOOK_SECRET=WEBHOOK_SECRET
    )

    assert message == "METRICS_PORT and WEBHOOK_PORT are both 8080: give each its own"


def test_webhook_port_without_secret_names_the_missing_secret() -> None:
    message = problem_for(WEBHOOK_PORT="8080")

    assert message == "PIXVERSE_WEBHOOK_SECRET is required when WEBHOOK_PORT is set"


def test_webhook_secret_without_port_names_the_missing_port() -> None:
    message = problem_for(PIXVERSE_WEBHOOK_SECRET=WEBHOOK_SECRET)

    assert message == "WEBHOOK_PORT is required when PIXVERSE_WEBHOOK_SECRET is set"


# -- gateway shards ------------------------------------------------------------------------------


@pytest.mark.usefixtures("required")
def test_unset_shard_count_runs_the_gateway_unsharded() -> None:
    settings = load_settings(env_file=None)

    assert (settings.shard_count, settings.shard_ids, settings.shards) == (None, None, None)


@pytest.mark.usefixtures("required")
def test_shard_count_alone_runs_every_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARD_COUNT", "3")

    settings = load_settings(env_file=None)

    assert (settings.shard_count, settings.shard_ids, settings.shards) == (3, None, (0, 1, 2))


@pytest.mark.usefixtures("required")
def test_shard_ids_pick_this_process_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARD_COUNT", "4")
    monkeypatch.setenv("SHARD_IDS", " 3, 1 ")

    settings = load_settings(env_file=None)

    assert settings.shard_ids == (3, 1)
    assert settings.shards == (1, 3)


@pytest.mark.usefixtures("required")
def test_an_empty_shard_ids_means_every_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    # .env.example ships `SHARD_IDS=`.
    monkeypatch.setenv("SHARD_COUNT", "2")
    monkeypatch.setenv("SHARD_IDS", "")

    assert load_settings(env_file=None).shards == (0, 1)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT is invalid: "),
        ({"SHARD_COUNT": "two"}, "SHARD_COUNT is invalid: "),
        (
            {"SHARD_IDS": "1"},
            "SHARD_COUNT is required when SHARD_IDS is set: set it to the total number of "
            "shards all processes run",
        ),
        (
            {"SHARD_COUNT": "2", "SHARD_IDS": "2"},
            "SHARD_IDS is invalid: there is no shard 2 with SHARD_COUNT=2: use numbers from 0 to 1",
        ),
        (
            {"SHARD_COUNT": "2", "SHARD_IDS": "-1"},
            "SHARD_IDS is invalid: '-1' is not a shard number: list shard numbers separated by "
            "commas, e.g. 0,1",
        ),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0 1"}, "SHARD_IDS is invalid: '0 1' is not a shard"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0,,1"}, "SHARD_IDS is invalid: an entry is empty"),
        (
            {"SHARD_COUNT": "3", "SHARD_IDS": "1,2,1"},
            "SHARD_IDS is invalid: shard 1 is listed more than once",
        ),
    ],
)
def test_bad_shard_settings_give_one_line_saying_what_to_change(
    variables: dict[str, str], expected: str
) -> None:
    message = problem_for(**variables)

    assert message.startswith(expected)
    assert "\n" not in message


# -- secrets ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("required")
def test_secrets_are_secret_strings_hidden_from_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXVERSE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("WEBHOOK_PORT", "8080")

    settings = load_settings(env_file=None)

    assert isinstance(settings.discord_token, SecretStr)
    assert isinstance(settings.pixverse_api_key, SecretStr)
    assert isinstance(settings.pixverse_webhook_secret, SecretStr)
    for secret in (TOKEN, KEY, WEBHOOK_SECRET):
        assert secret not in repr(settings)
        assert secret not in str(settings)
    assert settings.pixverse_key == KEY


# -- the model catalogue ------------------------------------------------------------------------


@pytest.mark.usefixtures("required")
def test_pixverse_catalogue_replaces_the_built_in_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shipped = ROOT / "bot" / "pixverse" / "catalogue.toml"
    path = tmp_path / "models.toml"
    path.write_text(shipped.read_text(encoding="utf-8").replace('"1080p" = 18', '"1080p" = 19'))
    monkeypatch.setenv("PIXVERSE_CATALOGUE", str(path))

    settings = load_settings(env_file=None)

    assert settings.pixverse_catalogue == path
    assert settings.catalogue.models["v6"].price[Quality.P1080].per_second == 19
    assert str(path) in settings.catalogue.source


def test_a_credit_costs_key_the_catalogue_does_not_accept_is_named() -> None:
    message = problem_for(CREDIT_COSTS='{"v4.5/1080p/8/normal": 200}')

    assert message.startswith("CREDIT_COSTS is invalid: 'v4.5/1080p/8/normal'")
    assert "\n" not in message


@pytest.mark.usefixtures("required")
def test_credit_costs_keys_of_accepted_combinations_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CREDIT_COSTS", '{"v6/720p/12/normal": 100}')

    assert load_settings(env_file=None).credit_costs == {"v6/720p/12/normal": 100}


def test_a_default_model_the_catalogue_has_at_a_duration_it_allows_is_taken() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_token="t",
        simulate=True,
        default_model="c1",
        default_duration=15,
    )

    assert (settings.default_model_name, settings.default_duration) == ("c1", 15)
