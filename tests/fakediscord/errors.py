"""Errors raised by the fake Discord.

`FakeDiscordError` is raised *to the test* when it asks for something Discord's client would
never send (an unknown command, an option of the wrong type). `APIError` is turned into an HTTP
error response *to the bot*, shaped like Discord's JSON errors.
"""

from __future__ import annotations

from typing import Any


class FakeDiscordError(AssertionError):
    """The test drove the fake in a way real Discord would not allow."""


class FakeDiscordTimeout(TimeoutError):
    """A bounded wait on the fake ran out."""


class APIError(Exception):
    """An error answer from the REST API: HTTP status, Discord JSON error code and message."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        self.extra: dict[str, Any] = {}
        self.include_code = True

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.include_code:
            body["code"] = self.code
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


# Discord JSON error codes used by the fake (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
UNKNOWN_APPLICATION_COMMAND = 10063
REQUEST_TOO_LARGE = 40005
ALREADY_ACKNOWLEDGED = 40060
MISSING_ACCESS = 50001
CANNOT_EDIT_OTHERS_MESSAGE = 50005
EMPTY_MESSAGE = 50006
MISSING_PERMISSIONS = 50013
INVALID_WEBHOOK_TOKEN = 50027
INVALID_FORM_BODY = 50035


def unknown_message() -> APIError:
    return APIError(404, UNKNOWN_MESSAGE, "Unknown Message")


def unknown_interaction() -> APIError:
    return APIError(404, UNKNOWN_INTERACTION, "Unknown interaction")


def invalid_webhook_token() -> APIError:
    return APIError(401, INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")


def form_error(errors: dict[str, str]) -> APIError:
    """A 400 / 50035 "Invalid Form Body" with Discord's nested `errors` shape."""
    nested: dict[str, Any] = {}
    for path, text in errors.items():
        node = nested
        for part in path.split("."):
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": "BASE_TYPE_INVALID", "message": text})
    return APIError(400, INVALID_FORM_BODY, "Invalid Form Body", errors=nested)
