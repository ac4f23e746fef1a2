"""Step-by-step derivation reports: content (what is shown), layout (md, tex, html, pdf), diagram, CLI."""

from symgrad.report.layout import latex_summary, layout, pdf, report

__all__ = ["latex_summary", "layout", "pdf", "report"]
