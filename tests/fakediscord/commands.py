"""Application commands: the registry behind the sync routes, Discord's validation of command
definitions, and lookup of a command path ("quota-admin set") for invoking it."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import UNKNOWN_APPLICATION_COMMAND, APIError, FakeDiscordError, form_error

if TYPE_CHECKING:
    from .snowflake import SnowflakeFactory

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
INTEGER = 4
BOOLEAN = 5
USER = 6
CHANNEL = 7
ROLE = 8
MENTIONABLE = 9
NUMBER = 10
ATTACHMENT = 11

OPTION_TYPE_NAMES = {
    SUB_COMMAND: "SUB_COMMAND",
    SUB_COMMAND_GROUP: "SUB_COMMAND_GROUP",
    STRING: "STRING",
    INTEGER: "INTEGER",
    BOOLEAN: "BOOLEAN",
    USER: "USER",
    CHANNEL: "CHANNEL",
    ROLE: "ROLE",
    MENTIONABLE: "MENTIONABLE",
    NUMBER: "NUMBER",
    ATTACHMENT: "ATTACHMENT",
}

CHAT_INPUT = 1

# Discord's rule for CHAT_INPUT names: 1-32 word characters, dashes or apostrophes, lowercase.
_NAME_RE = re.compile(r"^[-_'\w]{1,32}$")

Scope = int | None  # None = global, else a guild id


def option_type_name(value: int) -> str:
    return OPTION_TYPE_NAMES.get(value, str(value))


def validate_command(definition: dict[str, Any]) -> dict[str, str]:
    """Discord's checks on one command definition: {error path: message}, empty when valid."""
    errors: dict[str, str] = {}
    kind = definition.get("type", CHAT_INPUT)
    name = definition.get("name")
    if not isinstance(name, str) or not name:
        errors["name"] = "This field is required"
        return errors
    if kind == CHAT_INPUT:
        _check_name(name, "name", errors)
        _check_description(definition.get("description"), "description", errors)
        _check_options(definition.get("options") or [], "options", errors, top_level=True)
        if _total_length(definition) > 4000:
            errors["_"] = "Command exceeds maximum size (4000)"
    else:
        if not 1 <= len(name) <= 32:
            errors["name"] = "Must be between 1 and 32 in length."
        if definition.get("description"):
            errors["description"] = "Context menu commands cannot have a description."
        if definition.get("options"):
            errors["options"] = "Context menu commands cannot have options."
    return errors


def _check_name(name: Any, path: str, errors: dict[str, str]) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        errors[path] = f"Command name is invalid: {name!r}"
    elif name != name.lower():
        errors[path] = f"Command name must be lowercase: {name!r}"


def _check_description(description: Any, path: str, errors: dict[str, str]) -> None:
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        errors[path] = "Must be between 1 and 100 in length."


def _check_options(
    options: list[dict[str, Any]], path: str, errors: dict[str, str], *, top_level: bool
) -> None:
    if len(options) > 25:
        errors[path] = "Must be 25 or fewer in length."
    kinds = [o.get("type") for o in options]
    subs = [k for k in kinds if k in (SUB_COMMAND, SUB_COMMAND_GROUP)]
    if subs and len(subs) != len(kinds):
        errors[path] = (
            "Sub-command and sub-command group option types are mutually exclusive to all "
            "other types"
        )
    seen: set[str] = set()
    optional_seen = False
    for index, option in enumerate(options):
        at = f"{path}.{index}"
        kind = option.get("type")
        if kind not in OPTION_TYPE_NAMES:
            errors[f"{at}.type"] = f"Value must be one of {sorted(OPTION_TYPE_NAMES)}."
            continue
        name = str(option.get("name", ""))
        _check_name(name, f"{at}.name", errors)
        if name in seen:
            errors[f"{at}.name"] = f"Option name {name!r} is already used in these options"
        seen.add(name)
        _check_description(option.get("description"), f"{at}.description", errors)
        if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
            if not top_level and kind == SUB_COMMAND_GROUP:
                errors[f"{at}.type"] = "Sub-command groups can only be nested in a command"
            children = option.get("options") or []
            if kind == SUB_COMMAND_GROUP and any(c.get("type") != SUB_COMMAND for c in children):
                errors[f"{at}.options"] = "Sub-command groups may only contain sub-commands"
            _check_options(children, f"{at}.options", errors, top_level=False)
            continue
        required = bool(option.get("required", False))
        if required and optional_seen:
            errors[f"{at}.required"] = "Required options must be placed before non-required options"
        optional_seen = optional_seen or not required
        _check_option_details(option, kind, at, errors)


def _check_option_details(
    option: dict[str, Any], kind: int, at: str, errors: dict[str, str]
) -> None:
    choices = option.get("choices")
    if choices:
        if kind not in (STRING, INTEGER, NUMBER):
            errors[f"{at}.choices"] = (
                "Choices are only allowed for STRING, INTEGER and NUMBER options"
            )
        if len(choices) > 25:
            errors[f"{at}.choices"] = "Must be 25 or fewer in length."
        if option.get("autocomplete"):
            errors[f"{at}.autocomplete"] = "Autocomplete cannot be set with choices"
        for c_index, choice in enumerate(choices):
            value = choice.get("value")
            c_at = f"{at}.choices.{c_index}"
            if not isinstance(choice.get("name"), str) or not 1 <= len(choice["name"]) <= 100:
                errors[f"{c_at}.name"] = "Must be between 1 and 100 in length."
            if not _value_matches(kind, value):
                errors[f"{c_at}.value"] = (
                    f"Choice value {value!r} does not match {option_type_name(kind)}"
                )
            elif kind == STRING and len(value) > 100:
                errors[f"{c_at}.value"] = "Must be 100 or fewer in length."
    if option.get("autocomplete") and kind not in (STRING, INTEGER, NUMBER):
        errors[f"{at}.autocomplete"] = (
            "Autocomplete is only allowed for STRING, INTEGER and NUMBER options"
        )
    if ("min_value" in option or "max_value" in option) and kind not in (INTEGER, NUMBER):
        errors[f"{at}.min_value"] = (
            "min_value/max_value are only allowed for INTEGER and NUMBER options"
        )
    if ("min_length" in option or "max_length" in option) and kind != STRING:
        errors[f"{at}.min_length"] = "min_length/max_length are only allowed for STRING options"
    if "channel_types" in option and kind != CHANNEL:
        errors[f"{at}.channel_types"] = "channel_types is only allowed for CHANNEL options"


def _total_length(definition: dict[str, Any]) -> int:
    total = len(definition.get("name", "")) + len(definition.get("description", ""))
    for option in definition.get("options") or []:
        total += _total_length(option)
        for choice in option.get("choices") or []:
            total += len(str(choice.get("name", ""))) + len(str(choice.get("value", "")))
    return total


def _value_matches(kind: int, value: Any) -> bool:
    if kind == STRING:
        return isinstance(value, str)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    return True


@dataclass
class CommandPath:
    """A command definition and the subcommand chain selected by a path like "quota-admin set"."""

    definition: dict[str, Any]
    scope: Scope
    chain: list[dict[str, Any]]  # the SUB_COMMAND_GROUP / SUB_COMMAND options walked

    @property
    def leaf_options(self) -> list[dict[str, Any]]:
        node = self.chain[-1] if self.chain else self.definition
        return list(node.get("options") or [])

    @property
    def qualified_name(self) -> str:
        return " ".join([self.definition["name"], *(c["name"] for c in self.chain)])

    def wrap(self, leaf: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Nest the leaf options inside the SUB_COMMAND(_GROUP) options, as Discord sends them."""
        options = leaf
        for node in reversed(self.chain):
            options = [{"name": node["name"], "type": node["type"], "options": options}]
        return options


class CommandRegistry:
    """The application's commands per scope, with the ids Discord would assign."""

    def __init__(self, application_id: int, snowflakes: SnowflakeFactory) -> None:
        self._application_id = application_id
        self._snowflakes = snowflakes
        self._scopes: dict[Scope, dict[int, dict[str, Any]]] = {}
        self.sync_counts: Counter[Scope] = Counter()  # bulk overwrites (tree.sync) per scope
        self.write_counts: Counter[Scope] = Counter()  # every create/edit/delete/overwrite

    def in_scope(self, scope: Scope) -> list[dict[str, Any]]:
        return list(self._scopes.get(scope, {}).values())

    def get(self, scope: Scope, command_id: int) -> dict[str, Any]:
        try:
            return self._scopes[scope][command_id]
        except KeyError:
            raise APIError(
                404, UNKNOWN_APPLICATION_COMMAND, "Unknown application command"
            ) from None

    def bulk_overwrite(
        self, scope: Scope, definitions: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        errors: dict[str, str] = {}
        seen: set[tuple[int, str]] = set()
        for index, definition in enumerate(definitions):
            for path, text in validate_command(definition).items():
                errors[f"{index}.{path}"] = text
            key = (definition.get("type", CHAT_INPUT), definition.get("name", ""))
            if key in seen:
                errors[f"{index}.name"] = f"Application command names must be unique: {key[1]!r}"
            seen.add(key)
        if errors:
            raise form_error(errors)
        old = {(c["type"], c["name"]): c for c in self.in_scope(scope)}
        commands: dict[int, dict[str, Any]] = {}
        for definition in definitions:
            previous = old.get((definition.get("type", CHAT_INPUT), definition["name"]))
            stored = self._store(scope, definition, previous)
            commands[int(stored["id"])] = stored
        self._scopes[scope] = commands
        self.sync_counts[scope] += 1
        self.write_counts[scope] += 1
        return list(commands.values())

    def upsert(self, scope: Scope, definition: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        errors = validate_command(definition)
        if errors:
            raise form_error(errors)
        kind = definition.get("type", CHAT_INPUT)
        previous = next(
            (
                c
                for c in self.in_scope(scope)
                if c["type"] == kind and c["name"] == definition["name"]
            ),
            None,
        )
        stored = self._store(scope, definition, previous)
        self._scopes.setdefault(scope, {})[int(stored["id"])] = stored
        self.write_counts[scope] += 1
        return stored, previous is None

    def edit(self, scope: Scope, command_id: int, patch: dict[str, Any]) -> dict[str, Any]:
        current = self.get(scope, command_id)
        merged = {**current, **patch}
        errors = validate_command(merged)
        if errors:
            raise form_error(errors)
        stored = self._store(scope, merged, current)
        self._scopes[scope][command_id] = stored
        self.write_counts[scope] += 1
        return stored

    def delete(self, scope: Scope, command_id: int) -> None:
        self.get(scope, command_id)
        del self._scopes[scope][command_id]
        self.write_counts[scope] += 1

    def _store(
        self, scope: Scope, definition: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        stored = dict(definition)
        stored["id"] = previous["id"] if previous else str(self._snowflakes.next())
        stored["application_id"] = str(self._application_id)
        stored["version"] = str(self._snowflakes.next())
        stored.setdefault("type", CHAT_INPUT)
        stored.setdefault("description", "")
        stored.setdefault("options", [])
        permissions = stored.get("default_member_permissions")
        # Discord stores and returns the permission bits as a string.
        stored["default_member_permissions"] = (
            None if permissions is None else str(int(permissions))
        )
        stored.setdefault("nsfw", False)
        stored.setdefault("name_localizations", None)
        stored.setdefault("description_localizations", None)
        if scope is None:
            stored.setdefault("dm_permission", True)
            stored.setdefault("contexts", None)
            stored.setdefault("integration_types", [0])
        else:
            stored["guild_id"] = str(scope)
        return stored

    def resolve(self, path: str, guild_id: int | None, *, kind: int = CHAT_INPUT) -> CommandPath:
        """Find the command for "name [group] [sub]", guild commands first, as Discord's client
        would list them; raise FakeDiscordError naming what exists when it does not."""
        parts = path.strip().lstrip("/").split()
        if not parts:
            raise FakeDiscordError("empty command path")
        scopes: list[Scope] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for definition in self.in_scope(scope):
                if definition["type"] == kind and definition["name"] == parts[0]:
                    return _walk(definition, scope, parts)
        known = sorted({c["name"] for s in scopes for c in self.in_scope(s) if c["type"] == kind})
        raise FakeDiscordError(
            f"no command {parts[0]!r} synced for guild {guild_id} or globally; synced: {known}"
        )


def _walk(definition: dict[str, Any], scope: Scope, parts: list[str]) -> CommandPath:
    chain: list[dict[str, Any]] = []
    node = definition
    for part in parts[1:]:
        subs = [
            o for o in node.get("options") or [] if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)
        ]
        match = next((o for o in subs if o["name"] == part), None)
        if match is None:
            where = " ".join([definition["name"], *(c["name"] for c in chain)])
            raise FakeDiscordError(
                f"/{where} has no subcommand {part!r}; it has {[o['name'] for o in subs]}"
            )
        chain.append(match)
        node = match
    remaining = [
        o for o in node.get("options") or [] if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)
    ]
    if remaining:
        where = " ".join(parts)
        raise FakeDiscordError(
            f"/{where} needs a subcommand: one of {[o['name'] for o in remaining]}"
        )
    return CommandPath(definition=definition, scope=scope, chain=chain)
