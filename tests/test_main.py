"""`python -m bot` start-up failures, and the secret redaction of every log line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import discord.utils
import pytest

from bot.logs import RedactSecrets, setup_logging

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "discord-token-5b1e9d"
KEY = "pixverse-key-77c0aa"
MASK = "[redacted]"


def run_bot(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot` in ``cwd`` with only PATH, PYTHONPATH, HOME and ``env`` set."""
    clean = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- python -m bot --------------------------------------------------------------------------


def test_missing_discord_token_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    done = run_bot(tmp_path, PIXVERSE_API_KEY=KEY)

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert "DISCORD_TOKEN" in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_missing_api_key_without_simulate_exits_2_naming_it(tmp_path: Path) -> None:
    done = run_bot(tmp_path, DISCORD_TOKEN=TOKEN)

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert "PIXVERSE_API_KEY" in lines[0]
    assert TOKEN not in done.stderr


def test_malformed_setting_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    done = run_bot(tmp_path, DISCORD_TOKEN=TOKEN, PIXVERSE_API_KEY=KEY, MAX_ACTIVE_JOBS="abc")

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert "MAX_ACTIVE_JOBS" in lines[0]
    assert "Traceback" not in done.stderr


def test_shard_ids_beyond_shard_count_exit_2_with_one_line_naming_them(tmp_path: Path) -> None:
    done = run_bot(
        tmp_path, DISCORD_TOKEN=TOKEN, PIXVERSE_API_KEY=KEY, SHARD_COUNT="2", SHARD_IDS="0,2"
    )

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert "SHARD_IDS is invalid" in lines[0] and "SHARD_COUNT=2" in lines[0]
    assert "Traceback" not in done.stderr


def test_dotenv_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"DISCORD_TOKEN={TOKEN}\n", encoding="utf-8")

    done = run_bot(tmp_path)

    # The token came from .env, so the next thing missing is the key.
    assert done.returncode == 2
    assert "PIXVERSE_API_KEY" in done.stderr
    assert "DISCORD_TOKEN" not in done.stderr


def test_help_exits_0_and_lists_the_flags(tmp_path: Path) -> None:
    done = run_bot(tmp_path, "--help")

    assert done.returncode == 0
    assert "--simulate" in done.stdout
    assert "--sync" in done.stdout


# -- RedactSecrets ----------------------------------------------------------------------------


def emit(record: logging.LogRecord, secrets: list[str]) -> str:
    """What a handler with the filter writes for ``record``."""
    handler = logging.Handler()
    handler.addFilter(RedactSecrets(secrets))
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    assert handler.filter(record)
    return handler.format(record)


def make_record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("bot.test", logging.ERROR, __file__, 1, msg, args, exc_info)


def raised(message: str) -> BaseException:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


def test_token_in_the_message_is_redacted() -> None:
    line = emit(make_record(f"login with {TOKEN} failed"), [TOKEN])

    assert line == f"ERROR login with {MASK} failed"


def test_token_in_the_arguments_is_redacted() -> None:
    line = emit(make_record("headers: %s", {"Authorization": f"Bot {TOKEN}"}), [TOKEN])

    assert TOKEN not in line
    assert MASK in line


def test_token_in_an_exception_traceback_is_redacted() -> None:
    line = emit(make_record("request failed", exc=raised(f"bad header {TOKEN}")), [TOKEN])

    assert "Traceback" in line
    assert f"RuntimeError: bad header {MASK}" in line
    assert TOKEN not in line


def test_every_secret_is_redacted() -> None:
    line = emit(make_record("%s and %s", TOKEN, KEY), [TOKEN, KEY])

    assert line == f"ERROR {MASK} and {MASK}"


def test_record_without_secrets_is_unchanged() -> None:
    line = emit(make_record("queue depth %d", 3), [TOKEN])

    assert line == "ERROR queue depth 3"


def test_empty_secret_redacts_nothing() -> None:
    # In simulate mode the PixVerse key is "": it must not mask every gap between letters.
    line = emit(make_record("all quiet"), ["", TOKEN])

    assert line == "ERROR all quiet"


# -- setup_logging ----------------------------------------------------------------------------


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
@pytest.mark.parametrize("colour", [False, True], ids=["plain", "colour-terminal"])
def test_setup_logging_redacts_tracebacks(
    colour: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a terminal discord.py's colour formatter renders the traceback again from exc_info.
    monkeypatch.setattr(discord.utils, "stream_supports_colour", lambda _stream: colour)
    setup_logging("INFO", [TOKEN, KEY])

    logging.getLogger("bot.test").error(
        "failed with %s", KEY, exc_info=raised(f"bad header {TOKEN}")
    )

    err = capsys.readouterr().err
    assert "Traceback" in err
    assert MASK in err
    assert TOKEN not in err
    assert KEY not in err


# -- the model catalogue --------------------------------------------------------------------


def test_malformed_catalogue_file_exits_2_with_one_line_naming_the_file_and_entry(
    tmp_path: Path,
) -> None:
    shipped = (ROOT / "bot" / "pixverse" / "catalogue.toml").read_text(encoding="utf-8")
    broken = tmp_path / "models.toml"
    broken.write_text(shipped.replace('"1080p" = 18', '"1080p" = -18'), encoding="utf-8")

    done = run_bot(tmp_path, "--simulate", DISCORD_TOKEN=TOKEN, PIXVERSE_CATALOGUE=str(broken))

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "PIXVERSE_CATALOGUE" in lines[0] and str(broken) in lines[0]
    assert 'models.v6.price: the price of "1080p" per second must not be negative' in lines[0]
    assert "Traceback" not in done.stderr


def test_catalogue_that_is_not_toml_exits_2_naming_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "models.toml"
    broken.write_text('[models."v9"\nqualities = ["540p"]\n', encoding="utf-8")

    done = run_bot(tmp_path, "--simulate", DISCORD_TOKEN=TOKEN, PIXVERSE_CATALOGUE=str(broken))

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "is not valid TOML" in lines[0] and "line 1" in lines[0]


@pytest.mark.parametrize(
    ("defaults", "named"),
    [
        ({"DEFAULT_DURATION": "12"}, "DEFAULT_DURATION is invalid"),
        ({"DEFAULT_MODEL": "v9"}, "DEFAULT_MODEL is invalid"),
        (
            {"DEFAULT_QUALITY": "1080p", "DEFAULT_DURATION": "8"},
            "DEFAULT_MODEL, DEFAULT_QUALITY and DEFAULT_DURATION do not go together",
        ),
    ],
)
def test_defaults_the_catalogue_does_not_allow_together_exit_2_with_one_line(
    tmp_path: Path, defaults: dict[str, str], named: str
) -> None:
    done = run_bot(tmp_path, "--simulate", DISCORD_TOKEN=TOKEN, **defaults)

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0] and "catalogue" in lines[0]
    assert "Traceback" not in done.stderr
