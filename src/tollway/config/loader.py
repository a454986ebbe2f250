"""Load ``tollway.yaml``: YAML, ``${ENV}`` interpolation, validation, cross-reference checks.

Every problem is reported as ``place: message`` where the place is the dotted path of the value
in the file (``apis.names.operations[0].method``), so the user can go straight to it.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tollway.config.model import TollwayConfig
from tollway.errors import UserError
from tollway.policies.kinds import validate_policy
from tollway.policies.registry import POLICY_MODELS

Loc = tuple[str | int, ...]

SECTIONS = ("backends", "named_values", "apis", "products", "policies")
_REFERENCE = re.compile(r"\$\$\{|\$\{(?:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})?")
NAMED_REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_SECRET_SECTIONS = ("named_values", "headers", "policies")  # may hold keys: never echoed


class ConfigError(UserError):
    """One or more problems in a config file, each a ``place: message`` line."""

    def __init__(self, messages: Iterable[str], *, source: str = "") -> None:
        self.messages = list(messages)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if len(self.messages) == 1:
            return where + self.messages[0]
        lines = "\n".join(f"  {message}" for message in self.messages)
        return f"{where}{len(self.messages)} problems:\n{lines}"


def place(loc: Iterable[str | int]) -> str:
    """Dotted path of a location: ``('apis', 'x', 'operations', 0)`` -> ``apis.x.operations[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def did_you_mean(word: str, choices: Collection[str], what: str) -> str:
    """A parenthesised hint: the closest choice, else the list of choices."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if not choices:
        return f" (no {what} are defined)"
    shown = sorted(choices)
    more = f", ... ({len(shown) - 10} more)" if len(shown) > 10 else ""
    return f" ({what}: {', '.join(shown[:10])}{more})"


def load_config_file(path: Path, env: Mapping[str, str] = os.environ) -> TollwayConfig:
    """Read and load the config file at ``path`` (see :func:`load_config`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file {str(path)!r} does not exist"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{str(path)!r} is a directory, not a config file"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{str(path)!r} is not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError([f"cannot read {str(path)!r}: {exc.strerror}"]) from None
    return load_config(text, source=str(path), env=env)


def load_config(text: str, *, source: str, env: Mapping[str, str]) -> TollwayConfig:
    """Parse YAML, interpolate ``${VAR}``/``${VAR:-default}`` from ``env``, validate, check refs.

    ``$${`` writes a literal ``${``. Raises :class:`ConfigError` listing every problem found.
    """
    data = _parse_yaml(text, source)
    errors: list[str] = []
    data = _interpolate(data, (), env, errors)
    if errors:
        raise ConfigError(errors, source=source)
    return validate_config(data, source=source)


def validate_config(data: Mapping[str, Any], *, source: str = "") -> TollwayConfig:
    """Validate a parsed document and check its cross-references (:class:`ConfigError`)."""
    try:
        config = TollwayConfig.model_validate(data)
    except ValidationError as exc:
        messages = validation_messages(exc, replace=dict(_policy_problems(data)))
        raise ConfigError(messages, source=source) from None
    errors = check_references(config)
    if errors:
        raise ConfigError(errors, source=source)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys instead of silently keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader itself reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{where}{exc.problem or exc.context}"], source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                "the top level must be a mapping of sections "
                f"({', '.join(SECTIONS)}), not a {type(data).__name__}"
            ],
            source=source,
        )
    # An empty section (``apis:`` with everything below commented out) means "none".
    return {key: value for key, value in data.items() if not (value is None and key in SECTIONS)}


def _interpolate(value: Any, loc: Loc, env: Mapping[str, str], errors: list[str]) -> Any:
    if isinstance(value, str):
        return _interpolate_text(value, loc, env, errors)
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, str(k)), env, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), env, errors) for i, v in enumerate(value)]
    return value


def _interpolate_text(text: str, loc: Loc, env: Mapping[str, str], errors: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name is None:
            errors.append(
                f"{place(loc)}: '${{' must start a reference such as ${{NAME}} or "
                "${NAME:-default}; write '$${' for a literal '${'"
            )
            return match.group(0)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        if name in env:
            return ""
        errors.append(f"{place(loc)}: environment variable {name} is not set")
        return match.group(0)

    return _REFERENCE.sub(replace, text)


def _policy_lists(data: Mapping[str, Any]) -> Iterator[tuple[Loc, Any]]:
    yield ("policies",), data.get("policies")
    for section in ("apis", "products"):
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        for name, spec in entries.items():
            if not isinstance(spec, dict):
                continue
            yield (section, str(name), "policies"), spec.get("policies")
            operations = spec.get("operations") if section == "apis" else None
            for index, operation in enumerate(operations if isinstance(operations, list) else []):
                if isinstance(operation, dict):
                    yield (
                        (section, str(name), "operations", index, "policies"),
                        operation.get("policies"),
                    )


def _policy_problems(data: Mapping[str, Any]) -> Iterator[tuple[Loc, list[str]]]:
    """Check each policy entry on its own, so messages can name ``policies[2].limit``."""
    for loc, entries in _policy_lists(data):
        if not isinstance(entries, list):
            continue
        problems: list[str] = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                problems.append(
                    f"{place((*loc, index))}: each policy should be a mapping with a 'type', "
                    f"not {_kind(entry)}"
                )
                continue
            try:
                validate_policy(entry)
            except ValidationError as exc:
                model = POLICY_MODELS.get(entry["type"])
                problems += validation_messages(exc, prefix=(*loc, index), root=model)
            except ValueError as exc:
                problems.append(f"{place((*loc, index))}: {exc}")
        if problems:
            yield loc, problems


def validation_messages(
    exc: ValidationError,
    *,
    prefix: Loc = (),
    root: type[BaseModel] | None = TollwayConfig,
    replace: Mapping[Loc, list[str]] | None = None,
) -> list[str]:
    """Turn a pydantic ``ValidationError`` into ``place: message`` lines.

    Errors at or below a location in ``replace`` are replaced by that location's messages.
    """
    pending = dict(replace or {})
    messages: list[str] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        covering = next((r for r in replace or {} if loc[: len(r)] == r), None)
        if covering is None:
            messages.append(_error_message(error, loc, prefix, root))
        elif covering in pending:
            messages += pending.pop(covering)
    return messages + [m for problems in pending.values() for m in problems]


def _error_message(error: ErrorDetails, loc: Loc, prefix: Loc, root: type[BaseModel] | None) -> str:
    kind, value = error["type"], error.get("input")
    if loc and loc[-1] == "[key]":
        return f"{place((*prefix, *loc[:-1]))}: {_name_problem(value)}"
    where = place((*prefix, *loc))
    if kind == "extra_forbidden":
        known = _known_fields(root, loc[:-1])
        hint = did_you_mean(str(loc[-1]), known, "known fields") if known else ""
        return f"{where}: unknown field{hint}"
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{where}: should be a mapping of 'field: value' entries, not {_kind(value)}"
    if kind == "list_type":
        return f"{where}: should be a list, not {_kind(value)}"
    if kind == "string_type" and isinstance(value, int | float | bool):
        return f"{where}: should be text; put the value in quotes"
    if kind == "value_error":
        return f"{where}: {error.get('ctx', {}).get('error', error['msg'])}"
    text = error["msg"]
    text = "should" + text[len("Input should") :] if text.startswith("Input should") else text
    if _can_show((*prefix, *loc), value):
        text += f" (got {value!r})"
    return f"{where}: {text[:1].lower()}{text[1:]}"


def _name_problem(value: Any) -> str:
    if not isinstance(value, str):
        return f"names must be text, not {_kind(value)}"
    return (
        f"{value!r} is not a valid name: use lowercase letters, digits, '-' and '_', "
        "starting with a letter or digit (at most 100 characters)"
    )


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    names = {str: "text", int: "a number", float: "a number", bool: "true/false", list: "a list"}
    return names.get(type(value), "a mapping" if isinstance(value, dict) else type(value).__name__)


def _can_show(loc: Loc, value: Any) -> bool:
    """Echo the offending input only for short scalars outside secret-bearing sections."""
    if any(part in _SECRET_SECTIONS for part in loc):
        return False
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 60


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        models = [a for a in get_args(annotation) if _is_model(_unwrap(a))]
        return _unwrap(models[0]) if models else annotation
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _known_fields(root: type[BaseModel] | None, loc: Loc) -> list[str]:
    """Field names of the model found at ``loc`` below ``root`` (for 'did you mean')."""
    annotation: Any = root
    for part in loc:
        annotation = _unwrap(annotation)
        if _is_model(annotation) and isinstance(part, str):
            field = annotation.model_fields.get(part)
            if field is None:
                return []
            annotation = field.annotation
        elif get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1 if get_origin(annotation) is dict else 0]
        else:
            return []
    annotation = _unwrap(annotation)
    return list(annotation.model_fields) if _is_model(annotation) else []


def check_references(config: TollwayConfig) -> list[str]:
    """Cross-reference problems: unknown backends, APIs and named values, shared paths."""
    errors: list[str] = []
    used_paths: dict[str, str] = {}
    for name, api in config.apis.items():
        if api.backend not in config.backends:
            hint = did_you_mean(api.backend, config.backends, "backends")
            errors.append(f"apis.{name}.backend: no backend named {api.backend!r}{hint}")
        owner = used_paths.setdefault(api.path, name)
        if owner != name:
            errors.append(f"apis.{name}.path: {api.path!r} is already used by api {owner!r}")
    for name, product in config.products.items():
        seen: set[str] = set()
        for index, api_name in enumerate(product.apis):
            where = f"products.{name}.apis[{index}]"
            if api_name not in config.apis:
                hint = did_you_mean(api_name, config.apis, "apis")
                errors.append(f"{where}: no api named {api_name!r}{hint}")
            elif api_name in seen:
                errors.append(f"{where}: api {api_name!r} is listed twice")
            seen.add(api_name)
    for name, backend in config.backends.items():
        for header, value in backend.headers.items():
            for ref in NAMED_REFERENCE.findall(value):
                if ref not in config.named_values:
                    hint = did_you_mean(ref, config.named_values, "named values")
                    errors.append(
                        f"backends.{name}.headers.{header}: no named value {ref!r} in this "
                        f"file{hint}; {{{{...}}}} must name a named value defined in the same "
                        "file (one already in the database is not enough)"
                    )
    return errors
