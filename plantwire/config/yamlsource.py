"""Read a YAML file into plain data while remembering where every value came from.

PyYAML's ``safe_load`` forgets line numbers and quietly keeps the last of two duplicate keys;
a plant engineer needs "site.yaml:42: address: ..." and a refusal of the duplicate. So the file
is composed into nodes, and the nodes are turned into data here, recording for every path the
line and column it came from and whether its text was an environment reference.

Environment references: ``${NAME}`` is the variable's value (an error when it is not set),
``${NAME:-default}`` falls back to the default, ``$$`` is a literal ``$``. A plain (unquoted)
scalar is typed after substitution, so ``port: ${PORT:-1883}`` gives an integer.
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
        else:
            text += f".{part}" if text else str(part)
    return text


class _Builder:
    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.doc = YamlDocument(file, None)
        self.environ = environ
        self.issues: list[ConfigIssue] = []
        self._loader = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, path)

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
            for key, value in self._mapping(source, path).items():
                merged.setdefault(key, value)
        return merged

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        text = node.value
        if "$" not in text or node.tag != "tag:yaml.org,2002:str":
            return self._loader.construct_object(node, deep=True)
        substituted = self._substitute(text, node, path)
        whole = _WHOLE_REFERENCE.match(text)
        if whole:
            self.doc.env_names[path] = whole.group(1)
        if node.style is None:  # plain scalar: type it as YAML would have typed the result
            tag = self._loader.resolve(yaml.ScalarNode, substituted, (True, False))  # type: ignore[no-untyped-call]
            retyped = yaml.ScalarNode(tag, substituted, node.start_mark, node.end_mark)
            return self._loader.construct_object(retyped, deep=True)
        return substituted

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
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        return YamlDocument(file, None), [
            ConfigIssue(file, line, f"YAML syntax: {problem}", column=column)
        ]
    except yaml.YAMLError as exc:
        return YamlDocument(file, None), [ConfigIssue(file, None, f"YAML: {exc}")]
    if root is None:
        return YamlDocument(file, None), [
            ConfigIssue(file, 1, "the file is empty; a site file starts with 'site:'")
        ]
    builder = _Builder(file, os.environ if environ is None else environ)
    builder.doc.data = builder.build(root, ())
    return builder.doc, builder.issues
