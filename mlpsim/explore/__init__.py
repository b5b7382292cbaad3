"""Pages a person can look at: the run explorer and the report site.

``explorer.py`` writes one self-contained HTML file per run (no server, no
internet: data embedded, drawings computed in the page from the stored
weights); ``report.py`` gathers every study output found under a folder into an
index page, with each study's verdicts, figures and explorers, and a walk
through the seed notebook. ``explorer.js`` / ``explorer.css`` are the page's
code, inlined at build time. Nothing here analyses anything of its own: numbers
come from :mod:`mlpsim.analysis` and :mod:`mlpsim.claims`.
"""
from .explorer import build_explorer
from .report import build_report

__all__ = ["build_explorer", "build_report"]
