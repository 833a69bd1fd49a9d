"""One self-contained HTML page: headings, text, tables, key figures and PNGs inlined as base64.

Any stage can build a page section by section:

    page = Report("muP transfer")
    page.heading("Sweep"); page.text("..."); page.figure(fig, "loss vs lr"); page.table(rows)
    page.write("out/report.html")

Nothing is fetched at view time (no scripts, no external CSS), so the file can be mailed or
attached to an issue as is.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #333;padding-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #ccc;border-radius:6px;
padding:.6em 1em;min-width:11em}.card .v{font-size:1.5em;font-weight:600}.card .k{color:#555}
.ok{color:#137333}.bad{color:#b3261e}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}
.lead{font-size:1.2em;font-weight:500}
"""


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _close(fig: Any) -> None:
    """Release a pyplot figure (a no-op for figures pyplot does not track)."""
    import matplotlib.pyplot as plt

    plt.close(fig)


def png_data_uri(png: bytes | str | Path) -> str:
    """A data: URI for PNG bytes or a PNG file, so the image lives inside the page."""
    data = Path(png).read_bytes() if isinstance(png, (str, Path)) else png
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—" if math.isnan(v) else ("∞" if v > 0 else "-∞")
        return f"{v:.4g}"
    return str(v)


class Report:
    """An HTML page assembled from sections; write() makes one self-contained file."""

    def __init__(self, title: str, subtitle: str | None = None):
        self.title = title
        self.parts: list[str] = []
        if subtitle:
            self.text(subtitle)

    def heading(self, text: str, level: int = 2) -> Report:
        """A section heading (h2 by default)."""
        level = min(max(level, 2), 4)
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def text(self, text: str, cls: str | None = None) -> Report:
        """A paragraph of plain text (escaped); blank lines start new paragraphs."""
        c = f' class="{html.escape(cls)}"' if cls else ""
        for para in str(text).split("\n\n"):
            self.parts.append(f"<p{c}>{html.escape(para.strip())}</p>")
        return self

    def code(self, text: str) -> Report:
        """A block of literal text (a command), escaped, in a monospace box."""
        self.parts.append(f"<pre><code>{html.escape(text)}</code></pre>")
        return self

    def bullets(self, items: list[tuple[str, bool | None]]) -> Report:
        """A list of plain-text items, each green (True), red (False) or plain (None)."""
        cls = {None: "", True: ' class="ok"', False: ' class="bad"'}
        rows = "".join(f"<li{cls[ok]}>{html.escape(text)}</li>" for text, ok in items)
        self.parts.append(f"<ul>{rows}</ul>")
        return self

    def raw(self, fragment: str) -> Report:
        """An HTML fragment, unescaped (the caller vouches for it)."""
        self.parts.append(fragment)
        return self

    def cards(self, items: dict[str, Any], good: dict[str, bool] | None = None) -> Report:
        """Big key figures side by side; `good` colours a card green (True) or red (False)."""
        out = ['<div class="cards">']
        for k, v in items.items():
            cls = ""
            if good and k in good:
                cls = " ok" if good[k] else " bad"
            out.append(
                f'<div class="card"><div class="v{cls}">{html.escape(_fmt(v))}</div>'
                f'<div class="k">{html.escape(k)}</div></div>'
            )
        out.append("</div>")
        self.parts.append("".join(out))
        return self

    def table(self, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Report:
        """A table from a list of dicts (columns default to the first row's keys)."""
        if not rows:
            return self.text("(no rows)")
        cols = columns or list(rows[0])
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self

    def figure(self, fig_or_png: Any, caption: str = "", dpi: int = 110) -> Report:
        """A matplotlib figure, PNG bytes or a PNG path, inlined as base64."""
        png = fig_or_png
        if hasattr(fig_or_png, "savefig"):
            png = figure_png(fig_or_png, dpi)
            _close(fig_or_png)  # inlined: a page of many figures keeps none open
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(
            f'<figure><img alt="{html.escape(caption)}" src="{png_data_uri(png)}">{cap}</figure>'
        )
        return self

    def json(self, data: Any, summary: str = "raw data") -> Report:
        """A collapsible block of pretty-printed JSON."""
        txt = html.escape(json.dumps(data, indent=2, default=str))
        self.parts.append(
            f"<details><summary>{html.escape(summary)}</summary><pre>{txt}</pre></details>"
        )
        return self

    def to_html(self) -> str:
        """The whole page as a string."""
        t = html.escape(self.title)
        return (
            f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{t}</title><style>{_CSS}</style></head><body><h1>{t}</h1>\n"
            + "\n".join(self.parts)
            + "\n</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Write the page; return its path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_html(), encoding="utf-8")
        return p
