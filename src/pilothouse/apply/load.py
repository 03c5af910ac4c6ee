"""Reading pilothouse.yaml: YAML with positions, then the Document model, every problem at once.

PyYAML's composer gives each node its start mark; walking the node tree records the (line,
column) of every key and value by its path, so a Pydantic error's `loc` (or a problem found
later, when references are resolved) is reported as `file:line:column path: rule`. Duplicate
keys, which YAML loaders silently overwrite, are problems too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from pilothouse.apply.spec import Document
from pilothouse.errors import PilothouseError

Path = tuple[str | int, ...]
#: Largest document accepted (a file with thousands of services stays far below it).
MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file: where (path, 1-based line and column) and the rule."""

    path: str
    line: int
    column: int
    rule: str

    def render(self, filename: str = "pilothouse.yaml") -> str:
        where = f" {self.path}:" if self.path else ""
        return f"{filename}:{self.line}:{self.column}:{where} {self.rule}"

    def as_detail(self) -> dict[str, Any]:
        return {"field": self.path or "document", "rule": self.rule, **self.position()}

    def position(self) -> dict[str, int]:
        return {"line": self.line, "column": self.column}


class DocumentInvalid(PilothouseError):
    """422: the file has problems; `detail` lists each with its line and column."""

    status = 422
    code = "validation_failed"

    def __init__(self, problems: list[Problem]) -> None:
        ordered = sorted(problems, key=lambda p: (p.line, p.column, p.path))
        lines = "; ".join(p.render() for p in ordered[:20])
        more = f" (and {len(ordered) - 20} more)" if len(ordered) > 20 else ""
        super().__init__(
            f"{len(ordered)} problem(s) in the file: {lines}{more}",
            detail=[p.as_detail() for p in ordered],
        )
        self.problems = ordered


@dataclass
class Marks:
    """(line, column) of each path's value, and of each mapping key."""

    values: dict[Path, tuple[int, int]]
    keys: dict[Path, tuple[int, int]]

    def at(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Position of `path`'s value (of its key with `key`), or of its nearest ancestor's
        value when the file does not have it."""
        probe = tuple(path)
        if probe and probe[-1] == "[key]":  # pydantic's location of a bad mapping key
            probe, key = probe[:-1], True
        if key and probe in self.keys:
            return self.keys[probe]
        while probe:
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def problem(self, path: Path, rule: str, *, key: bool = False) -> Problem:
        line, column = self.at(path, key=key)
        return Problem(".".join(str(p) for p in path), line, column, rule)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _walk(node: yaml.Node, path: Path, marks: Marks, problems: list[Problem]) -> None:
    marks.values[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                line, column = _pos(key_node)
                problems.append(Problem(".".join(map(str, child)), line, column, "duplicate key"))
            seen.add(key)
            marks.keys[child] = _pos(key_node)
            _walk(value_node, child, marks, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), marks, problems)


def parse_yaml(text: str) -> tuple[Any, Marks, list[Problem]]:
    """The YAML document as plain data, its marks, and its duplicate keys (problems: the last
    one would win silently); DocumentInvalid on a syntax error."""
    if len(text.encode()) > MAX_BYTES:
        raise DocumentInvalid([Problem("", 1, 1, f"larger than {MAX_BYTES // 1048576} MiB")])
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, Marks({(): (1, 1)}, {}), []
        marks = Marks({}, {})
        problems: list[Problem] = []
        _walk(node, (), marks, problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        rule = f"not valid YAML: {exc.problem or exc.context}"
        raise DocumentInvalid([Problem("", line, column, rule)]) from None
    except yaml.YAMLError as exc:
        raise DocumentInvalid([Problem("", 1, 1, f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return data, marks, problems


def _rule(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required"
    return message


def load(text: str) -> tuple[Document, Marks]:
    """The validated Document and its marks; DocumentInvalid naming every problem at once."""
    data, marks, problems = parse_yaml(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DocumentInvalid([*problems, marks.problem((), "the document must be a mapping")])
    try:
        document = Document.model_validate(data)
    except ValidationError as exc:
        problems += [
            marks.problem(tuple(e["loc"]), _rule(e), key=e["type"] == "extra_forbidden")
            for e in exc.errors()
        ]
    if problems:
        raise DocumentInvalid(problems)
    return document, marks
