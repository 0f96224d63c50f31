"""One self-contained HTML audit report: tables, PNG plots as data URIs, example rows.

Nothing in the page points outside it (no scripts, fonts or stylesheets from a network),
so it opens offline, in a mail attachment or in a CI artefact viewer.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from curate.audit.plots import all_plots
from curate.audit.tables import Audit
from curate.core.io import write_text
from curate.errors import UserError

# In every report's <head>: a file is only ever overwritten when it holds this mark.
REPORT_MARK = '<meta name="generator" content="curate audit">'
# How reports began before they carried the mark: they too may be rewritten.
_EARLIER_REPORT_HEAD = '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Audit: '
_REPORT_SUFFIXES = (".html", ".htm")

# Aggregated tables are small; these caps only bite on huge cluster / contamination lists.
_MAX_TABLE_ROWS = 200
_MAX_CELL_CHARS = 300

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
  color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:13px;margin:.6em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.notes{background:#fff8e1;border:1px solid #f0d98a;padding:.5em 1em}
.sample{border:1px solid #ddd;border-radius:4px;padding:.5em 1em;margin:.7em 0}
.meta{color:#666;font-size:13px} pre{white-space:pre-wrap;background:#fafafa;padding:.6em;font-size:12.5px}
details summary{cursor:pointer;color:#335}
"""


def render_report(audit: Audit, out_path: str | Path, *, samples_per_band: int = 3) -> Path:
    """Write the audit of `audit` to `out_path` as one HTML file; returns the path."""
    out_path = Path(out_path)
    check_report_path(out_path)
    plots = all_plots(audit)
    sections = [
        _section("Funnel", _image(plots.get("funnel"), "funnel"), _table(audit.funnel()),
                 "<h3>Rejections by reason</h3>", _table(audit.rejection_reasons())),
        _section("Teachers", _table(audit.teachers()), _image(plots.get("lengths"), "token lengths"),
                 f"<h3>Token length distribution ({audit.length_column()})</h3>", _table(audit.lengths()),
                 _image(plots.get("agreement"), "teacher agreement"), _table(audit.agreement())),
        _section("Labels vs verify", _table(audit.label_agreement()),
                 "<h3>Disagreements</h3>", _pages(audit.label_disagreements())),
        _section("Difficulty", _table(audit.bands()), _image(plots.get("pass_rate"), "pass rates")),
        _section("Pruning", _image(plots.get("pruning"), "tokens saved by pruning"), _table(audit.pruning())),
        _section("Dedup clusters", _table(audit.clusters()),
                 "<h3>Number guard, templates, contamination matches</h3>", _table(audit.number_guard())),
        _section("Decontamination hits", _table(audit.contamination())),
        _section("Judge vs rules (verify)", _table(audit.judge())),
        _section("Examples per band", _samples(audit.samples(per_band=samples_per_band))),
    ]
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in dict.fromkeys(audit.notes))
    facts = " · ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in audit.summary().items())
    page = (
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{REPORT_MARK}"
        f"<title>Audit: {html.escape(audit.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Audit: {html.escape(audit.title)}</h1>"
        f"<p class=\"meta\">{facts} · generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>"
        + (f"<div class=\"notes\"><b>Missing data</b><ul>{notes}</ul></div>" if notes else "")
        + (f"<p class=\"meta\">Not in this recipe: {html.escape('; '.join(dict.fromkeys(audit.absent)))}</p>"
           if audit.absent else "")
        + "".join(sections) + "</body></html>\n"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(page, out_path)
    return out_path


def audit_command(path: str | Path, out: str | Path | None = None) -> Path:
    """`curate audit PATH [--out report.html]`: audit a run or published version, write the report."""
    out_path = Path(out) if out is not None else Path("report.html")
    check_report_path(out_path)  # before the audit's work
    return render_report(Audit.open(path), out_path)


def check_report_path(out: Path) -> None:
    """UserError unless `out` is an .html path that is new or holds a report curate wrote:
    `--out run/output.parquet` or `--out data.jsonl` would destroy data."""
    if out.suffix.lower() not in _REPORT_SUFFIXES:
        raise UserError(str(out), "the audit report is an HTML file and --out does not end in .html",
                        "pass --out NAME.html")
    if not (out.exists() or out.is_symlink()):
        return
    if not out.is_file():
        raise UserError(str(out), "exists and is not a file", "pass --out NAME.html for a new file")
    with open(out, "rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace")
    if REPORT_MARK not in head and not head.startswith(_EARLIER_REPORT_HEAD):
        raise UserError(str(out), "exists and is not an audit report written by curate; it would be overwritten",
                        "choose another --out, or move the file away yourself")


def _section(title: str, *parts: str) -> str:
    body = "".join(parts) or "<p class=\"meta\">No data.</p>"
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _image(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f"<img alt=\"{html.escape(alt)}\" src=\"data:image/png;base64,{base64.b64encode(png).decode('ascii')}\">"


def _table(frame: pl.DataFrame) -> str:
    if frame.height == 0:
        return "<p class=\"meta\">No rows.</p>"
    shown = frame.head(_MAX_TABLE_ROWS)
    numeric = {name for name, dtype in shown.schema.items() if dtype.is_numeric()}
    header = "".join(f"<th>{html.escape(name)}</th>" for name in shown.columns)
    rows = []
    for row in shown.iter_rows(named=True):
        cells = "".join(
            f"<td class=\"num\">{_cell(value)}</td>" if name in numeric else f"<td>{_cell(value)}</td>"
            for name, value in row.items()
        )
        rows.append(f"<tr>{cells}</tr>")
    hidden = frame.height - shown.height
    more = f"<p class=\"meta\">{hidden:,} more rows not shown.</p>" if hidden > 0 else ""
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def _pages(frame: pl.DataFrame, size: int = _MAX_TABLE_ROWS // 4) -> str:
    """Every row, in pages of `size` that open one at a time (the first is open)."""
    if frame.height <= size:
        return _table(frame)
    pages = []
    for start in range(0, frame.height, size):
        end = min(start + size, frame.height)
        pages.append(f"<details{' open' if start == 0 else ''}><summary>rows {start + 1:,}–{end:,} of "
                     f"{frame.height:,}</summary>{_table(frame.slice(start, size))}</details>")
    return "".join(pages)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = "; ".join("" if v is None else str(v) for v in value)
    elif isinstance(value, float):
        value = f"{value:,.4g}"
    text = str(value)
    if len(text) > _MAX_CELL_CHARS:
        text = text[:_MAX_CELL_CHARS] + "…"
    return html.escape(text)


def _samples(samples: pl.DataFrame) -> str:
    if samples.height == 0:
        return ""
    parts = []
    for band, rows in samples.group_by("band", maintain_order=True):
        parts.append(f"<h3>{html.escape(str(band[0]))}</h3>")
        for row in rows.iter_rows(named=True):
            meta = " · ".join(f"{k}: {_cell(row[k])}" for k in ("teacher", "pass_rate", "correct", "reasoning_tokens",
                                                             "reference_answer") if k in row)
            reasoning = row.get("reasoning")
            parts.append(
                "<div class=\"sample\">"
                f"<p class=\"meta\">{meta}</p><pre>{html.escape(row.get('problem') or '')}</pre>"
                + (f"<details><summary>Reasoning</summary><pre>{html.escape(reasoning)}</pre></details>"
                   if reasoning else "")
                + (f"<p><b>Answer</b></p><pre>{html.escape(row['answer_text'])}</pre>"
                   if row.get("answer_text") else "")
                + "</div>"
            )
    return "".join(parts)
