"""`.env` files: parse (comments, `export`, single and double quotes, escapes, multi-line
values) and render (pure functions; render then parse gives back the same mapping)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pilothouse.variables.rules import check_key

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
_LINE_START = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*", re.ASCII)


class DotenvError(ValueError):
    """A line that cannot be read; the message names the line number, never a value."""


def parse(text: str) -> dict[str, str]:
    """KEY -> value, in file order; a later duplicate wins."""
    out: dict[str, str] = {}
    pos, line_no = 0, 1
    length = len(text)
    while pos < length:
        end = text.find("\n", pos)
        end = length if end == -1 else end
        line = text[pos:end]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            pos, line_no = end + 1, line_no + 1
            continue
        match = _LINE_START.match(line)
        if match is None:
            raise DotenvError(f"line {line_no}: expected KEY=VALUE")
        key = match.group(1)
        start = pos + match.end()
        quote = text[start] if start < length and text[start] in "\"'" else None
        if quote is None:
            raw = text[start:end]
            cut = re.search(r"\s#", raw)
            out[key] = (raw[: cut.start()] if cut else raw).strip()
            pos, line_no = end + 1, line_no + 1
            continue
        value, after = _quoted(text, start + 1, quote, line_no)
        rest_end = text.find("\n", after)
        rest_end = length if rest_end == -1 else rest_end
        trailing = text[after:rest_end].strip()
        if trailing and not trailing.startswith("#"):
            raise DotenvError(f"line {line_no}: unexpected text after the closing quote")
        line_no += text.count("\n", pos, rest_end) + 1
        out[key] = value
        pos = rest_end + 1
    return out


def _quoted(text: str, at: int, quote: str, line_no: int) -> tuple[str, int]:
    chars: list[str] = []
    while at < len(text):
        c = text[at]
        if c == quote:
            return "".join(chars), at + 1
        if c == "\\" and quote == '"' and at + 1 < len(text):
            nxt = text[at + 1]
            chars.append(_ESCAPES.get(nxt, "\\" + nxt))
            at += 2
            continue
        chars.append(c)
        at += 1
    raise DotenvError(f"line {line_no}: the quoted value is never closed")


def _escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )


def render(values: Mapping[str, str], *, comments: Mapping[str, str] | None = None) -> str:
    """A .env text: one `KEY="value"` line per key, sorted, with optional comment lines."""
    lines = []
    for key in sorted(values):
        problem = check_key(key)
        if problem:
            raise DotenvError(f"{key}: {problem}")
        if comments and key in comments:
            lines.append(f"# {comments[key]}")
        lines.append(f'{key}="{_escape(values[key])}"')
    return "\n".join(lines) + ("\n" if lines else "")
