"""Typed requests and responses of the PixVerse API (docs/pixverse.md, "Endpoints used").

Nothing past the client sees a raw dict: responses are validated here, at the boundary.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.pixverse.rules import SEED_MAX, Motion, Quality, Style


class VideoStatus(IntEnum):
    """Result status codes (docs/pixverse.md, "Result and status codes"). Codes not listed
    are treated as still running."""

    DONE = 1
    GENERATING = 5
    DELETED = 6
    MODERATED = 7
    FAILED = 8

    @classmethod
    def terminal(cls) -> frozenset[int]:
        return frozenset({cls.DONE, cls.DELETED, cls.MODERATED, cls.FAILED})


class Envelope(BaseModel):
    """Every answer: ``{"ErrCode", "ErrMsg", "Resp"}``; the upload-moderation HTTP 500 variant
    uses lower-case keys, so both spellings are accepted (see docs/pixverse.md,
    "Envelope and errors")."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    err_code: int = Field(alias="ErrCode")
    err_msg: str = Field(default="", alias="ErrMsg")
    resp: Any = Field(default=None, alias="Resp")

    @model_validator(mode="before")
    @classmethod
    def _accept_lower_case(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ErrCode" not in data and "err_code" in data:
            return {
                "ErrCode": data["err_code"],
                "ErrMsg": data.get("err_msg", ""),
                "Resp": data.get("resp"),
            }
        return data


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Balance(_Response):
    account_id: int
    credit_monthly: int = 0
    credit_package: int = 0

    @property
    def total(self) -> int:
        return self.credit_monthly + self.credit_package


class UploadedImage(_Response):
    img_id: int
    img_url: str = ""


class UploadedMedia(_Response):
    media_id: int
    media_type: str = "video"
    url: str = ""


class GeneratedVideo(_Response):
    video_id: int


class VideoResult(_Response):
    id: int
    status: int
    url: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    style: str | None = None
    seed: int | None = None
    resolution_ratio: int | None = None
    output_width: int | None = Field(default=None, alias="outputWidth")
    output_height: int | None = Field(default=None, alias="outputHeight")
    # `size` is not a byte count (a 2 MB clip reported 5); kept only for display
    # (docs/pixverse.md, "Result and status codes").
    size: float | None = None
    create_time: str | None = None
    modify_time: str | None = None
    credits: int | None = None
    # Seen in live answers only (docs/pixverse.md, "Result and status codes"): None when
    # absent, which the bot reads as "no sound".
    has_audio: bool | None = None

    @field_validator("has_audio", mode="before")
    @classmethod
    def _audio_or_unknown(cls, value: Any) -> Any:
        # It only decides whether the Sound button is offered: an odd value means "not
        # said", never an unreadable result (which would be polled again and again).
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return {"false": False, "true": True}.get(value.strip().lower())
        return {0: False, 1: True}.get(value) if isinstance(value, int) else None

    @property
    def is_terminal(self) -> bool:
        return self.status in VideoStatus.terminal()

    @property
    def video_url(self) -> str | None:
        """The download URL, valid only once the status is 1 (see docs/pixverse.md,
        "Result and status codes")."""
        return self.url if self.status == VideoStatus.DONE and self.url else None


# The effect template list (GET /video/effects/templates/list) is documented only by a
# third-party CLI: the query names below are its, and the answer's field names are not
# published. These are the names seen for it (a reseller's wrapper of the list) and for its
# sibling, PixVerse's own restyle list (``{total, data: [{restyle_id, name}]}``): every one is
# accepted, and they live here only (docs/pixverse.md, "Effects").
TEMPLATE_QUERY_TYPE = "type"  # 1: video templates (2: image templates)
TEMPLATE_QUERY_PAGE = "page"  # from 1
TEMPLATE_QUERY_PAGE_SIZE = "pageSize"  # 10, 20, 50 or 100
TEMPLATE_VIDEO_TYPE = 1
TEMPLATE_PAGE_SIZES = (10, 20, 50, 100)
TEMPLATE_LIST_KEYS = ("data", "items", "list", "templates", "template_list")
TEMPLATE_TOTAL_KEYS = ("total", "total_count", "count")
TEMPLATE_ID_KEYS = ("template_id", "templateId", "id")
TEMPLATE_NAME_KEYS = ("display_name", "name", "template_name", "title")


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = data.get(key)
        if value is not None and value != "":
            return value
    return None


class EffectTemplate(_Response):
    """One effect of PixVerse's template list: its id (sent as ``template_id``) and name."""

    template_id: int
    name: str


class EffectTemplatePage(_Response):
    """One page of the template list. Entries without a usable id or name are skipped (and
    counted), not fatal: one odd entry must not hide every effect."""

    templates: list[EffectTemplate] = Field(default_factory=list)
    total: int | None = None
    skipped: int = 0

    @model_validator(mode="before")
    @classmethod
    def _read_any_shape(cls, data: Any) -> Any:
        if isinstance(data, list):
            entries: Any = data
            total = None
        elif isinstance(data, dict):
            if "templates" in data and isinstance(data.get("skipped"), int):
                return data  # already in our own shape
            entries = _first(data, TEMPLATE_LIST_KEYS) or []
            total = _first(data, TEMPLATE_TOTAL_KEYS)
        else:
            raise ValueError("the template list is neither an object nor a list")
        if not isinstance(entries, list):
            raise ValueError("the template list's entries are not a list")
        templates: list[dict[str, Any]] = []
        skipped = 0
        for entry in entries:
            template = _template(entry)
            if template is None:
                skipped += 1
            else:
                templates.append(template)
        number = total if isinstance(total, int) and not isinstance(total, bool) else None
        return {"templates": templates, "total": number, "skipped": skipped}


def _template(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        return None
    raw_id, name = _first(entry, TEMPLATE_ID_KEYS), _first(entry, TEMPLATE_NAME_KEYS)
    if isinstance(raw_id, bool) or not isinstance(name, str) or not name.strip():
        return None
    if isinstance(raw_id, str) and raw_id.strip().isdigit():
        raw_id = int(raw_id.strip())  # ids may come quoted (docs/pixverse.md, "Transport…")
    if not isinstance(raw_id, int) or raw_id <= 0:
        return None
    return {"template_id": raw_id, "name": " ".join(name.split())}


class _GenerateRequest(BaseModel):
    """Fields shared by every generate body (docs/pixverse.md, "Endpoints used")."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    # Lengths, durations and the model's name are checked against the model catalogue
    # before a job is accepted (bot.pixverse.catalogue); here only their types.
    prompt: str = Field(min_length=1)
    model: str = Field(min_length=1)
    duration: int = Field(ge=1)
    quality: Quality
    negative_prompt: str | None = None
    motion_mode: Motion | None = None
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    style: Style | None = None
    template_id: int | None = None
    # Sound (docs/pixverse.md, "Sound"): native audio on models that have it, else the
    # sound effect; sent only when asked for, never as false.
    generate_audio_switch: bool | None = None
    sound_effect_switch: bool | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body: absent options are left out, ids stay JSON numbers (see
        docs/pixverse.md, "Transport and trace ids")."""
        return self.model_dump(mode="json", exclude_none=True)


class ImageToVideoRequest(_GenerateRequest):
    img_id: int


class TextToVideoRequest(_GenerateRequest):
    aspect_ratio: str = "16:9"


class TransitionRequest(_GenerateRequest):
    """A video from a first and a last frame, both uploaded images (docs/pixverse.md,
    "Endpoints used"; the field names are ``first_frame_img``/``last_frame_img``, not
    ``…_img_id``)."""

    first_frame_img: int
    last_frame_img: int


class ExtendRequest(_GenerateRequest):
    source_video_id: int | None = None
    video_media_id: int | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ExtendRequest:
        # source_video_id XOR video_media_id (docs/pixverse.md, "Endpoints used").
        if (self.source_video_id is None) == (self.video_media_id is None):
            raise ValueError("extend needs exactly one of source_video_id or video_media_id")
        return self


# The sound description's field on the sound-effect endpoint. Two names are in use
# (docs/pixverse.md, "Sound"): PixVerse's own spec bundle says ``sound_effect_content`` (also
# the name of the same text inside the generate bodies), one third-party CLI sends ``prompt``.
# The spec is the official, higher-confidence source, so it wins; should PixVerse turn out to
# want the other, this one line changes (the simulator accepts both).
SOUND_DESCRIPTION_FIELD = "sound_effect_content"


class SoundEffectRequest(BaseModel):
    """POST /video/sound_effect/generate: sound for a finished video (docs/pixverse.md,
    "Sound")."""

    model_config = ConfigDict(extra="forbid")

    source_video_id: int | None = None
    video_media_id: int | None = None
    # What the sound should be; "" lets PixVerse make it from the video.
    description: str = ""
    # Keep the video's own sound under the new one; None leaves PixVerse's default.
    original_sound_switch: bool | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SoundEffectRequest:
        if (self.source_video_id is None) == (self.video_media_id is None):
            raise ValueError(
                "a sound effect needs exactly one of source_video_id or video_media_id"
            )
        return self

    def body(self) -> dict[str, Any]:
        """The JSON body. The description is sent even when empty: the spec reads an empty
        one as "choose the sound from the video", and a client that requires the field
        (PixVerse's own MCP tool does) still finds it."""
        body: dict[str, Any] = {SOUND_DESCRIPTION_FIELD: self.description}
        if self.source_video_id is not None:
            body["source_video_id"] = self.source_video_id
        if self.video_media_id is not None:
            body["video_media_id"] = self.video_media_id
        if self.original_sound_switch is not None:
            body["original_sound_switch"] = self.original_sound_switch
        return body
