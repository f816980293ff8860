"""CSV files as people have them: comma-, semicolon- or tab-separated (sniffed), a UTF-8 byte-order mark,
quoted fields, Windows line endings, a header row or none. One reader for regress and classify.

A first row is a header when some column holds a non-number there and numbers below it (decided after the
byte-order mark is stripped, so a file reads the same with and without one).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from losslab.errors import FLOAT32_MAX, ConfigError

_DELIMITERS = ",;\t"
_PROBE_ROWS = 20  # rows under the first one that decide whether it is a header


def expand(path: Optional[str]) -> Optional[str]:
    """`~` and `~user` expanded, as a shell would (paths given in quotes or config files keep them)."""
    return os.path.expanduser(path) if path else path


@dataclass(frozen=True)
class Table:
    path: str
    header: Optional[list[str]]  # None: the file has no header row
    rows: list[list[str]]
    first_line: int  # the file line number of rows[0]

    @property
    def width(self) -> int:
        return len(self.rows[0])

    def column(self, name: str, option: str) -> int:
        """The index of a column named in an option (by header name)."""
        if self.header is None:
            raise ConfigError(option, f"{self.path} has no header row, so columns cannot be named; add one")
        if name not in self.header:
            raise ConfigError(option, f"{self.path} has no column {name!r}; its columns: {', '.join(self.header)}")
        return self.header.index(name)

    def name(self, index: int) -> str:
        return self.header[index] if self.header is not None else f"column {index + 1}"

    def numbers(self, columns: Sequence[int], option: str) -> list[list[float]]:
        """The given columns as finite float32-range numbers, or a one-line error with line and column."""
        out = []
        for offset, row in enumerate(self.rows):
            parsed = []
            for col in columns:
                cell = row[col].strip()
                named = f" ({self.header[col]})" if self.header is not None else ""
                where = f"{self.path} line {self.first_line + offset}, column {col + 1}{named}"
                try:
                    v = float(cell)
                except ValueError:
                    raise ConfigError(option, f"{where}: {cell!r} is not a number") from None
                if not math.isfinite(v):
                    raise ConfigError(option, f"{where}: {cell} is not finite")
                if abs(v) > FLOAT32_MAX:
                    raise ConfigError(option, f"{where}: {cell} is beyond the float32 range (about ±3.4e38) that "
                                      "training uses")
                parsed.append(v)
            out.append(parsed)
        return out


def is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def read_table(path: str, option: str = "--data") -> Table:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(option, f"no such file: {path}")
    try:
        # utf-8-sig: a byte-order mark is not part of the first cell; newline="": quoted fields may hold line
        # breaks and \r\n endings are the csv module's to handle
        with p.open(newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(option, f"cannot read {path}: {exc}") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ConfigError(option, f"{path} line {line} holds a NUL byte: not a text CSV file (a binary file, or "
                          "a spreadsheet saved in another format?)")
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=_DELIMITERS)
    except csv.Error:
        dialect = csv.excel  # one column, or nothing to tell: plain commas
    try:
        reader = csv.reader(io.StringIO(text, newline=""), dialect)
        numbered = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise ConfigError(option, f"cannot read {path} as CSV: {exc}") from None
    if not numbered:
        raise ConfigError(option, f"{path} is empty")
    first_row = [c.strip() for c in numbered[0][1]]
    probe = [row for _, row in numbered[1:1 + _PROBE_ROWS]]
    header = None
    if probe and any(not is_number(cell) and all(col < len(r) and is_number(r[col]) for r in probe)
                     for col, cell in enumerate(first_row)):
        header = first_row
    elif not probe and not all(is_number(c) for c in first_row):
        header = first_row  # a header and nothing else
    body = numbered[1:] if header is not None else numbered
    if not body:
        raise ConfigError(option, f"{path} has a header but no data rows")
    width = len(header) if header is not None else len(body[0][1])
    for lineno, row in body:
        if len(row) != width:
            raise ConfigError(option, f"{path} line {lineno}: {len(row)} cells, expected {width}")
    return Table(path, header, [row for _, row in body], body[0][0])
