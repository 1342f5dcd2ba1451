"""The one loader for YAML and JSON config files, strict enough for hostile input.

Every config the course reads (training configs, their ``--set`` values, a dataset's
``dataset.json``) goes through :func:`load_config_file` or :func:`parse_config_text`.
Besides syntax errors they refuse what the plain parsers let through silently:

- a key given twice in one mapping, at any depth (the parsers keep the last one), named
  by its path with both line numbers;
- YAML anchors and aliases (``&a``/``*a``), which let a short file expand into a huge one;
- nesting deeper than :data:`MAX_DEPTH` and files over :data:`MAX_CONFIG_BYTES`.

Example:
    >>> parse_config_text("optimizer: {lr: 0.1}\\nepochs: 3\\n", kind="yaml")
    {'optimizer': {'lr': 0.1}, 'epochs': 3}
    >>> parse_config_text("epochs: 3\\nseed: 0\\nepochs: 4\\n", kind="yaml", source="run.yaml")
    Traceback (most recent call last):
    ...
    mlcourse.config_files.ConfigFileError: run.yaml: key 'epochs' appears twice (lines 1 and 3); a key may appear only once in a section.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlcourse.arguments import check_choice

SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 100

Path_ = tuple[str | int, ...]


class ConfigFileError(ValueError):
    """A config file (or text) cannot be used; ``problems`` lists every reason found."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = f"{source}: {self.problems[0]}"
        else:
            text = f"{source}:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class ConfigSyntaxError(ConfigFileError):
    """The text is not YAML (or JSON) at all, as opposed to valid text breaking a rule."""


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml``/``.json`` file whose top level is a mapping.

    Raises:
        ConfigFileError: the file is missing, too large, not UTF-8, has another suffix,
            does not parse, repeats a key, uses YAML aliases, or is not a mapping.

    Example:
        >>> load_config_file("settings.toml")
        Traceback (most recent call last):
        ...
        mlcourse.config_files.ConfigFileError: config file 'settings.toml': the file has suffix '.toml'; expected one of '.json', '.yaml', '.yml'.
    """
    path = Path(path)
    source = f"config file {str(path)!r}"
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        expected = ", ".join(repr(s) for s in SUFFIXES)
        raise ConfigFileError(
            source, [f"the file has suffix {path.suffix!r}; expected one of {expected}."]
        )
    text = _read_text(path, source)
    data = parse_config_text(text, kind=kind, source=source)
    if not isinstance(data, dict):
        kind_name = type(data).__name__
        article = "an" if kind_name[0] in "aeiou" else "a"
        found = "nothing" if data is None else f"{article} {kind_name}"
        raise ConfigFileError(
            source, [f"the file must hold a mapping at the top level, got {found}."]
        )
    return data


def parse_config_text(text: str, *, kind: str, source: str = "config text") -> Any:
    """Parse YAML or JSON ``text`` with the checks of :func:`load_config_file`.

    Args:
        kind: ``"yaml"`` or ``"json"``.
        source: how messages name the text, e.g. a file name or ``"--set optimizer"``.
    """
    check_choice("kind", kind, ("yaml", "json"))
    parse = _parse_yaml if kind == "yaml" else _parse_json
    try:
        return parse(text, source)
    except RecursionError:
        raise ConfigFileError(source, [_too_deep()]) from None


def _read_text(path: Path, source: str) -> str:
    if not path.exists():
        raise ConfigFileError(source, ["the file does not exist."])
    if not path.is_file():
        raise ConfigFileError(source, ["the path is not a regular file."])
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigFileError(
            source, [f"the file is {size} bytes, larger than the 1 MiB a config may be."]
        )
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigFileError(
            source, [f"the file is not UTF-8 text ({error.reason} at byte {error.start})."]
        ) from None


def _too_deep() -> str:
    return f"values are nested too deeply (more than {MAX_DEPTH} levels)."


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _twice(path: Path_, first: int, second: int) -> str:
    return (
        f"key {_dotted(path)!r} appears twice (lines {first} and {second}); "
        "a key may appear only once in a section."
    )


# --- YAML: walk the composed node tree before constructing values ---------------------------


def _parse_yaml(text: str, source: str) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems: list[str] = []
        _check_yaml_node(loader, node, (), problems, set())
        if problems:
            raise ConfigFileError(source, problems)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigFileError(
            source, [f"cannot parse the file: {' '.join(str(error).split())}"]
        ) from None
    finally:
        loader.dispose()


def _check_yaml_node(
    loader: yaml.SafeLoader, node: yaml.Node, path: Path_, problems: list[str], seen: set[int]
) -> None:
    line = node.start_mark.line + 1
    if id(node) in seen:  # the composer hands out one node object per anchor
        problems.append(
            f"line {line}: YAML anchors and aliases (&name, *name) are not allowed in config "
            "files; write the values out."
        )
        return
    seen.add(id(node))
    if len(path) >= MAX_DEPTH:
        problems.append(_too_deep())
        return
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_yaml_node(loader, item, (*path, index), problems, seen)
    elif isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                problems.append(
                    f"line {key_line}: YAML merge keys (<<) are not allowed in config files; "
                    "write the values out."
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(
                    f"line {key_line}: a key must be a plain value, not a list or mapping."
                )
                continue
            key = loader.construct_object(key_node)
            if key in first_line:
                problems.append(_twice((*path, str(key)), first_line[key], key_line))
            else:
                first_line[key] = key_line
            _check_yaml_node(loader, value_node, (*path, str(key)), problems, seen)


# --- JSON: parse strictly, then find repeated keys with their lines ---------------------------


def _parse_json(text: str, source: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        message = f"cannot parse the file: {error.msg} (line {error.lineno}, column {error.colno})."
        raise ConfigSyntaxError(source, [message]) from None
    problems = _json_structure_problems(text)
    if problems:
        raise ConfigFileError(source, problems)
    return data


@dataclass
class _Container:
    path: Path_
    is_object: bool
    keys: dict[str, int] = field(default_factory=dict)  # key -> line of its first use
    key: str | None = None  # the key whose value comes next (objects)
    index: int = 0  # position of the next item (arrays)
    expect_key: bool = True

    def child_path(self) -> Path_:
        return (*self.path, self.key if self.is_object else self.index)


def _json_structure_problems(text: str) -> list[str]:
    """Repeated keys (with their path and lines) and excessive depth in *valid* JSON text."""
    problems: list[str] = []
    stack: list[_Container] = []
    line, position = 1, 0
    while position < len(text):
        char = text[position]
        if char == '"':
            end = _json_string_end(text, position)
            if stack and stack[-1].is_object and stack[-1].expect_key:
                _note_json_key(stack[-1], json.loads(text[position:end]), line, problems)
            position = end
            continue
        if char in "{[":
            if len(stack) >= MAX_DEPTH:
                return [*problems, _too_deep()]
            path = stack[-1].child_path() if stack else ()
            stack.append(_Container(path=path, is_object=char == "{"))
        elif char in "}]":
            stack.pop()
        elif char == ",":
            stack[-1].expect_key = True
            stack[-1].index += 1
        elif char == "\n":
            line += 1
        position += 1
    return problems


def _note_json_key(container: _Container, key: str, line: int, problems: list[str]) -> None:
    container.expect_key = False
    container.key = key
    if key in container.keys:
        problems.append(_twice((*container.path, key), container.keys[key], line))
    else:
        container.keys[key] = line


def _json_string_end(text: str, start: int) -> int:
    """Index just past the string literal opening at ``start`` (valid JSON assumed)."""
    position = start + 1
    while text[position] != '"':
        position += 2 if text[position] == "\\" else 1
    return position + 1
