"""Read a YAML file into plain data while remembering where every value came from.

PyYAML's ``safe_load`` forgets line numbers and quietly keeps the last of two duplicate keys;
a plant engineer needs "site.yaml:42: address: ..." and a refusal of the duplicate. So the file
is composed into nodes, and the nodes are turned into data here, recording for every path the
line and column it came from and whether its text was an environment reference.

Environment references: ``${NAME}`` is the variable's value (an error when it is not set),
``${NAME:-default}`` falls back to the default, ``$$`` is a literal ``$``. A plain (unquoted)
scalar is typed after substitution, so ``port: ${PORT:-1883}`` gives an integer.

Whatever the text, reading it gives data or issues, never an exception: a value YAML cannot
construct (``2024-13-45``, an unknown ``!tag``), an alias that contains itself, nesting deeper
than any site file needs, and aliases that expand beyond a sane size are all issues with a line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from plantwire.errors import ConfigIssue

__all__ = ["Path_", "YamlDocument", "format_path", "read_yaml"]

Path_ = tuple[str | int, ...]

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_WHOLE_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}$")
_MERGE_TAG = "tag:yaml.org,2002:merge"
# A site file is about a dozen levels deep; the limits keep a hostile or broken file (deep
# brackets, self-referencing or exponentially repeated aliases) from exhausting the stack or
# the memory, and turn it into an issue instead.
_MAX_DEPTH = 100
_MAX_VALUES = 1_000_000
# What PyYAML's safe constructors raise on a scalar besides their own errors: ``2024-13-45`` is
# resolved as a timestamp and datetime refuses month 13 (ValueError), ``!!timestamp x`` misses a
# regex (AttributeError), ``!!int ''`` indexes an empty string, ``!!bool x`` looks up a table.
_CONSTRUCT_ERRORS = (yaml.YAMLError, ValueError, AttributeError, IndexError, KeyError, TypeError)


@dataclass
class YamlDocument:
    """The data of a YAML file, with where each path came from."""

    file: str
    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    env_names: dict[Path_, str] = field(
        default_factory=dict
    )  # path -> variable for whole references

    def locate(self, path: Path_) -> tuple[int | None, int | None]:
        """Line and column of a path, or of its nearest ancestor that exists in the file."""
        for end in range(len(path), -1, -1):
            mark = self.marks.get(path[:end])
            if mark is not None:
                return mark
        return None, None

    def issue(self, path: Path_, message: str) -> ConfigIssue:
        line, column = self.locate(path)
        return ConfigIssue(self.file, line, message, path=format_path(path), column=column)


def format_path(path: Path_) -> str:
    """``('areas', 0, 'lines', 1, 'id')`` -> ``areas[0].lines[1].id``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.isprintable():  # a key with a newline must not break the message's line
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class _TooLargeError(Exception):
    """Aliases expand the document beyond ``_MAX_VALUES``: reading stops at once."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class _DepthLimitedLoader(yaml.SafeLoader):
    """PyYAML's composer recurses once per level; refuse a depth that would end in a
    RecursionError with a syntax-like error at the place it happens."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"values are nested more than {_MAX_DEPTH} levels deep", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.doc = YamlDocument(file, None)
        self.environ = environ
        self.issues: list[ConfigIssue] = []
        self._loader = yaml.SafeLoader("")
        self._open: set[int] = set()  # the collection nodes being built (an alias loop re-enters)
        self._values = 0

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        self._values += 1
        if self._values > _MAX_VALUES:
            raise _TooLargeError(
                self._at(node, path, f"aliases expand the file to more than {_MAX_VALUES:,} values")
            )
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if not self._enter(node, path):
            return None
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            assert isinstance(node, yaml.SequenceNode)
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        finally:
            self._open.discard(id(node))

    def _enter(self, node: yaml.Node, path: Path_) -> bool:
        """Refuse an alias that contains itself, and nesting (through aliases) too deep."""
        if id(node) in self._open:
            self.issues.append(self._at(node, path, "an alias refers to a value that contains it"))
            return False
        if len(path) > _MAX_DEPTH:
            message = f"values are nested more than {_MAX_DEPTH} levels deep"
            self.issues.append(self._at(node, path, message))
            return False
        self._open.add(id(node))
        return True

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.update(self._merge_source(value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.append(
                    self._at(key_node, path, "a key must be a plain name, not a list or mapping")
                )
                continue
            key = str(self._loader.construct_scalar(key_node))
            if key in result:
                self.issues.append(self._at(key_node, (*path, key), f"duplicate key {key!r}"))
                continue
            result[key] = self.build(value_node, (*path, key))
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def _merge_source(self, node: yaml.Node, path: Path_) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.issues.append(self._at(source, path, "'<<' merges mappings only"))
                continue
            if not self._enter(source, path):
                continue
            try:
                for key, value in self._mapping(source, path).items():
                    merged.setdefault(key, value)
            finally:
                self._open.discard(id(source))
        return merged

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        text = node.value
        if "$" not in text or node.tag != "tag:yaml.org,2002:str":
            return self._construct(node, path, from_environment=False)
        substituted = self._substitute(text, node, path)
        whole = _WHOLE_REFERENCE.match(text)
        if whole:
            self.doc.env_names[path] = whole.group(1)
        if node.style is None:  # plain scalar: type it as YAML would have typed the result
            tag = self._loader.resolve(yaml.ScalarNode, substituted, (True, False))  # type: ignore[no-untyped-call]
            retyped = yaml.ScalarNode(tag, substituted, node.start_mark, node.end_mark)
            referenced = any(match.group(1) for match in _REFERENCE.finditer(text))
            return self._construct(retyped, path, from_environment=referenced)
        return substituted

    def _construct(self, node: yaml.ScalarNode, path: Path_, *, from_environment: bool) -> Any:
        """A scalar as YAML types it, or an issue (and None) when YAML cannot construct it."""
        if node.tag not in self._loader.yaml_constructors:
            self.issues.append(self._at(node, path, f"unknown YAML tag {node.tag!r}"))
            return None
        try:
            return self._loader.construct_object(node, deep=True)
        except _CONSTRUCT_ERRORS as exc:
            kind = node.tag.removeprefix("tag:yaml.org,2002:")
            if from_environment:  # the text may be a secret: do not repeat it or its parse error
                message = (
                    f"the value from the environment is not a valid YAML {kind}; "
                    "quote the reference to keep it as text"
                )
            else:  # the line and column point at the text; it is not repeated (a password?)
                message = f"the value is not a valid YAML {kind}"
                if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
                    message += f": {exc.problem}"
                elif isinstance(exc, ValueError):
                    message += f": {exc}"
            self.issues.append(self._at(node, path, message))
            return None

    def _substitute(self, text: str, node: yaml.Node, path: Path_) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.issues.append(
                        self._at(
                            node,
                            path,
                            f"environment variable {name} is not set "
                            f"(write ${{{name}:-default}} for a default)",
                        )
                    )
                    return ""
                return default
            return value

        return _REFERENCE.sub(replace, text)

    def _at(self, node: yaml.Node, path: Path_, message: str) -> ConfigIssue:
        return ConfigIssue(
            self.doc.file,
            node.start_mark.line + 1,
            message,
            path=format_path(path),
            column=node.start_mark.column + 1,
        )


def read_yaml(
    text: str, file: str, environ: Mapping[str, str] | None = None
) -> tuple[YamlDocument, list[ConfigIssue]]:
    """Parse YAML text; return the document and the problems found (syntax, duplicates, env)."""
    try:
        root = yaml.compose(text, Loader=_DepthLimitedLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        return YamlDocument(file, None), [
            ConfigIssue(file, line, f"YAML syntax: {problem}", column=column)
        ]
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...)
        return YamlDocument(file, None), [_reader_issue(file, text, exc)]
    except yaml.YAMLError as exc:  # none other is known; kept on one line, at the top
        message = f"YAML: {' '.join(str(exc).split())}"
        return YamlDocument(file, None), [ConfigIssue(file, 1, message)]
    if root is None:
        return YamlDocument(file, None), [
            ConfigIssue(file, 1, "the file is empty; a site file starts with 'site:'")
        ]
    builder = _Builder(file, os.environ if environ is None else environ)
    try:
        builder.doc.data = builder.build(root, ())
    except _TooLargeError as exc:
        return YamlDocument(file, None), [exc.issue]
    return builder.doc, builder.issues


def _reader_issue(file: str, text: str, exc: yaml.reader.ReaderError) -> ConfigIssue:
    position = min(exc.position, len(text))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    character = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "?")
    return ConfigIssue(
        file, line, f"YAML: character #x{character:04x}: {exc.reason}", column=column
    )
