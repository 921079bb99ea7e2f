"""The response envelope and the ErrCodes the simulator answers with.

See docs/pixverse.md, "Envelope and errors".
"""

from __future__ import annotations

from typing import Any

SUCCESS_MSG = "success"  # the docs say "success", the live service "Success"

EMPTY_PARAMETER = 400011
# The ErrCode for a bad key is undocumented; the simulator uses this one (docs/pixverse.md,
# "Envelope and errors").
INVALID_ACCOUNT = 400012
BAD_BINDING = 400013  # wrong parameter type or value
INVALID_PARAMETER = 400017  # semantic error; the message carries the detail
PROMPT_TOO_LONG = 400018
NEGATIVE_PROMPT_TOO_LONG = 400019
INVALID_IMAGE_ID = 400032
NOT_FOUND = 500008
IMAGE_TOO_LARGE = 500030
IMAGE_UNREADABLE = 500031
IMAGE_BAD_FORMAT = 500032
CONCURRENCY_LIMIT = 500044
UPLOAD_MODERATION = 500052
TEMPLATE_NOT_ACTIVATED = 500070
TEMPLATE_NO_HD = 500071
INSUFFICIENT_BALANCE = 500090

# Default ErrMsg of each code of the ErrCode table (docs/pixverse.md, "Envelope and errors"),
# used when a fault injects a code without a message.
MESSAGES: dict[int, str] = {
    400011: "empty parameter",
    400012: "Invalid API-KEY",
    400013: "invalid binding request: wrong parameter type or value",
    400017: "invalid parameter",
    400018: "prompt is longer than 2048 characters",
    400019: "negative_prompt is longer than 2048 characters",
    400032: "invalid image id",
    500008: "requested data not found",
    500020: "no permission for this operation",
    500030: "image too large",
    500031: "cannot read image info",
    500032: "invalid image format",
    500033: "invalid image width or height",
    500041: "image upload failed",
    500042: "invalid image path",
    500044: "concurrent generation limit reached",
    500052: "image moderation rejected",
    500054: "content moderation: image inappropriate",
    500060: "monthly effect activation limit reached",
    500063: "content moderation: input not compliant",
    500064: "content deleted",
    500069: "system is under high load, please try again later",
    500070: "template not activated",
    500071: "this effect does not support 720p or 1080p",
    500090: "insufficient balance",
    500100: "database error",
    99999: "unknown error",
}


class ApiError(Exception):
    """A business error: answered as HTTP 200 with a non-zero ErrCode (docs/pixverse.md,
    "Envelope and errors")."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.message = message or MESSAGES.get(code, "error")
        super().__init__(f"{code}: {self.message}")


def envelope(resp: Any) -> dict[str, Any]:
    return {"ErrCode": 0, "ErrMsg": SUCCESS_MSG, "Resp": resp}


def error_envelope(code: int, message: str) -> dict[str, Any]:
    # `Resp` may be empty on error (docs/pixverse.md, "Envelope and errors"); an empty object
    # keeps naive clients from crashing.
    return {"ErrCode": code, "ErrMsg": message, "Resp": {}}
