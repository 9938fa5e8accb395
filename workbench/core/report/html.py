"""Self-contained HTML pages: sections of prose, tables and plotly figures, plotly.js inlined, images as data URIs."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..store.atomic import staged


@dataclass(frozen=True)
class Section:
    title: str
    body: str  # HTML
    note: str = ""  # a plain-language sentence on how to read it


def figure_html(fig) -> str:
    """A figure's div; plotly.js itself is inlined once per page by `write_report`."""
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#666} section{margin:2rem 0} .note{color:#555;font-size:.95rem}
table{border-collapse:collapse;font-size:.9rem} th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
th{background:#f4f4f4} .scroll{overflow-x:auto;max-width:100%}
.grid{display:flex;flex-wrap:wrap;gap:.6rem} figure{margin:0}
figcaption{font-size:.8rem;color:#555;text-align:center} pre{background:#f7f7f7;padding:.6rem;overflow-x:auto}
.diagnosis{margin:1rem 0 1.6rem} figure img{max-width:100%} .missing{color:#b3261e}
"""


def write_report(path: Path | str, title: str, sections: Sequence[Section], *, subtitle: str = "") -> Path:
    """Write one self-contained HTML page (plotly.js inlined, images as data URIs): it opens offline."""
    from plotly.offline import get_plotlyjs

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<section><h2>{html.escape(s.title)}</h2>"
        + (f'<p class="note">{html.escape(s.note)}</p>' if s.note else "")
        + s.body
        + "</section>"
        for s in sections
    ]
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="meta">{html.escape(subtitle)} · generated {stamp}</p>'
        + "".join(parts)
        + "</body></html>"
    )
    path = Path(path)
    with staged(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
