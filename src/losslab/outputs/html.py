"""A result as HTML for a notebook cell: each report part as a table (numbers right-aligned, the best cells bold),
its notes as lines (diagnoses and verdicts kept), and the main plot inline as a PNG. No page wrapper and no
colours of its own: the notebook's theme (light or dark) styles it."""

from __future__ import annotations

import base64
from html import escape
from typing import Optional, Sequence

from losslab.outputs.display import Report

_TABLE = "border-collapse:collapse;margin:0.3em 0 0.6em 0;font-variant-numeric:tabular-nums"
_CELL = "padding:0.1em 0.8em 0.1em 0;text-align:{align};white-space:nowrap"
_NOTES_ = ("diagnosis", "winner", "tie", "verdict", "no clear", "warning")


def report_table(report: Report) -> str:
    lines = [f"<p style='margin:0.4em 0 0.2em 0'><b>{escape(report.title)}</b></p>"]
    if report.headers:
        def align(j: int) -> str:
            return "left" if j == 0 or j in report.text else "right"

        head = "".join(f"<th style='{_CELL.format(align=align(j))}'>{escape(h)}</th>"
                       for j, h in enumerate(report.headers))
        body = []
        for i, row in enumerate(report.rows):
            cells = []
            for j, cell in enumerate(row):
                text = f"<b>{escape(cell)}</b>" if (i, j) in report.best else escape(cell)
                cells.append(f"<td style='{_CELL.format(align=align(j))}'>{text}</td>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        lines.append(f"<table style='{_TABLE}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    for note in report.notes:
        strong = note.lower().startswith(_NOTES_)
        text = escape(note)
        lines.append(f"<div style='margin:0.1em 0'>{f'<b>{text}</b>' if strong else text}</div>")
    return "\n".join(lines)


def result_html(parts: Sequence[Report], png: Optional[bytes] = None, alt: str = "") -> str:
    """The report's parts, then the plot (PNG bytes) as an inline image."""
    html = [report_table(part) for part in parts]
    if png:
        data = base64.b64encode(png).decode("ascii")
        html.append(f"<img src='data:image/png;base64,{data}' alt='{escape(alt)}' style='max-width:100%'/>")
    return f"<div class='losslab-result'>\n{chr(10).join(html)}\n</div>"
