"""Reports: one self-contained HTML page with figures inlined (sizeup.report.Report)."""

from __future__ import annotations

from sizeup.report.html import Report, figure_png, png_data_uri

__all__ = ["Report", "figure_png", "png_data_uri"]
