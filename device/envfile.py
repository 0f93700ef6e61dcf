"""The env file read the way systemd's ``EnvironmentFile=`` reads it, so that ``roompulse
check-config`` and the service see the values the unit sees.

A port of the parser in systemd's ``src/basic/env-file.c`` (``parse_env_file_internal``,
systemd 252-256), which differs from python-dotenv (what pydantic-settings would use) in
ways that matter here:

- no ``${VAR}`` or ``$VAR`` expansion: ``PASSWORD=pa${HOME}word`` is those 14 characters
  (dotenv made it ``pa/rootword``, invisibly, since secrets are masked);
- ``#`` and ``;`` start a comment only at the start of a line, never inside a value;
- outside quotes a backslash takes the next character literally, and a backslash at the end
  of a line joins the next line; leading and trailing blanks of a value are dropped;
- inside ``'...'`` everything is literal; inside ``"..."`` a backslash escapes only
  ``" \\ ` $`` and a line end, and is kept before anything else;
- a line without ``=`` is ignored; an assignment whose name is not a valid variable name
  (letters, digits and ``_``, not starting with a digit) is ignored, as systemd ignores it;
- a value that is not UTF-8 is ignored here, but systemd refuses the whole file for it
  (``load_env_file_push`` returns the error of ``check_utf8ness_and_warn``; with
  ``EnvironmentFile=-`` the unit then gets none of the file's lines). Both are reported, line by
  line, by :func:`problems`.
"""

from __future__ import annotations

import re
from pathlib import Path

WHITESPACE = " \t\n\r"
NEWLINE = "\n\r"
SHELL_NEED_ESCAPE = '"\\`$'
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _append(chars: list[str], c: str, trailing: int) -> int:
    """Append ``c`` to ``chars``; return where the run of blanks at the end of ``chars`` now
    begins, -1 when it ends in a non-blank (systemd's ``last_key_whitespace`` /
    ``last_value_whitespace`` bookkeeping, the same for keys and unquoted values)."""
    if c not in WHITESPACE:
        trailing = -1
    elif trailing < 0:
        trailing = len(chars)
    chars.append(c)
    return trailing


def _parse(text: str) -> list[tuple[int, str, str]]:
    """``(line number, name, value)`` of every assignment, in file order, names not yet checked."""
    out: list[tuple[int, str, str]] = []
    state = "PRE_KEY"
    key: list[str] = []
    value: list[str] = []
    key_ws = value_ws = -1  # where trailing blanks of the key / unquoted value begin
    line = start = 1

    def push():
        name = "".join(key[:key_ws] if key_ws >= 0 else key)
        out.append((start, name, "".join(value)))

    for c in text:
        if state == "PRE_KEY":
            if c in "#;":
                state = "COMMENT"
            elif c not in WHITESPACE:
                state, key, key_ws, start = "KEY", [c], -1, line
        elif state == "KEY":
            if c in NEWLINE:
                state = "PRE_KEY"  # no '=': ignored, as systemd does
            elif c == "=":
                state, value, value_ws = "PRE_VALUE", [], -1
            else:
                key_ws = _append(key, c, key_ws)
        elif state == "PRE_VALUE":
            if c in NEWLINE:
                state = "PRE_KEY"
                push()
            elif c == "'":
                state = "SINGLE_QUOTE_VALUE"
            elif c == '"':
                state = "DOUBLE_QUOTE_VALUE"
            elif c == "\\":
                state = "VALUE_ESCAPE"
            elif c not in WHITESPACE:
                state = "VALUE"
                value.append(c)
        elif state == "VALUE":
            if c in NEWLINE:
                state = "PRE_KEY"
                if value_ws >= 0:
                    del value[value_ws:]
                push()
            elif c == "\\":
                state, value_ws = "VALUE_ESCAPE", -1
            else:
                value_ws = _append(value, c, value_ws)
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if c not in NEWLINE:  # a backslash before a line end joins the lines
                value.append(c)
        elif state == "SINGLE_QUOTE_VALUE":
            if c == "'":
                state = "PRE_VALUE"
            else:
                value.append(c)
        elif state == "DOUBLE_QUOTE_VALUE":
            if c == '"':
                state = "PRE_VALUE"
            elif c == "\\":
                state = "DOUBLE_QUOTE_VALUE_ESCAPE"
            else:
                value.append(c)
        elif state == "DOUBLE_QUOTE_VALUE_ESCAPE":
            state = "DOUBLE_QUOTE_VALUE"
            if c in SHELL_NEED_ESCAPE:
                value.append(c)
            elif c != "\n":
                value += ["\\", c]
        elif state == "COMMENT":
            if c == "\\":
                state = "COMMENT_ESCAPE"
            elif c in NEWLINE:
                state = "PRE_KEY"
        elif state == "COMMENT_ESCAPE":
            state = "PRE_KEY" if c in NEWLINE else "COMMENT"
        if c == "\n":
            line += 1
    if state in ("PRE_VALUE", "VALUE", "VALUE_ESCAPE", "SINGLE_QUOTE_VALUE", "DOUBLE_QUOTE_VALUE",
                 "DOUBLE_QUOTE_VALUE_ESCAPE"):
        if state == "VALUE" and value_ws >= 0:
            del value[value_ws:]
        push()
    return out


def _read(path: Path) -> tuple[dict[str, str], list[str]]:
    text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    values: dict[str, str] = {}
    bad: list[str] = []
    for line, name, value in _parse(text):
        shown = ascii(name) if not name.isprintable() or any("\udc80" <= c <= "\udcff" for c in name) else name
        if not _NAME.fullmatch(name):
            why = "contains a non-printable character" if not name.isprintable() else "is not a valid variable name"
            bad.append(f"{path} line {line}: {shown} {why}: the assignment is ignored (as systemd ignores it)")
        elif any("\udc80" <= c <= "\udcff" for c in value):
            bad.append(f"{path} line {line}: the value of {name} is not valid UTF-8: ignored here, and systemd's "
                       "EnvironmentFile= refuses the whole file because of it: write the line in UTF-8")
        else:
            values[name] = value  # a later assignment wins, as in systemd
    return values, bad


def read_env_file(path: Path) -> dict[str, str]:
    """``{name: value}`` of the valid assignments in ``path``, systemd's way (see the module doc).

    Raises:
        OSError: the file cannot be read.
    """
    return _read(path)[0]


def problems(path: Path) -> list[str]:
    """One line per assignment of ``path`` that systemd would ignore (bad name, not UTF-8),
    naming the line; non-printable characters shown escaped (``'ROOMPULSE_WINDOW_S\\x00'``)."""
    return _read(path)[1]
