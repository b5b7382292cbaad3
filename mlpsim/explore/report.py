"""The report: every study output (and atlas) found under a folder, as one small site.

    mlpsim report --out out/report [SOURCES ...]      # SOURCES default: out

``index.html`` has one card per study output (a folder with ``summary.json``
and ``meta.json``, as ``mlpsim study`` writes) and per atlas (``atlas.json``):
its question, its verdicts (status, effect with interval, p-value), its
findings, its figures, and links to the explorers of its runs.
``notebook.html`` walks through the seed notebook cell by cell, each Wolfram
cell beside the mlpsim command or API call that does the same, and its
figure. Figures and explorers are copied in, so the folder can be sent or
attached as it is. Plain HTML and CSS: it opens offline from ``file://``.
"""
from __future__ import annotations

import html
import shutil
from pathlib import Path

from ..config import ConfigError
from ..store import RunError, atomic_write_bytes, read_json

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
  padding: 1em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin: 0.2em 0; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.8em 1em; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
.supported { color: #2a7a3a; font-weight: bold; } .contradicted { color: #b33; font-weight: bold; }
.inconclusive { color: #8a6d00; font-weight: bold; }
.figs { display: flex; flex-wrap: wrap; gap: 0.5em; }
.figs a img { max-width: 360px; max-height: 240px; border: 1px solid #eee; }
.note { color: #666; font-size: 0.85em; }
pre { white-space: pre-wrap; background: #f4f4f4; padding: 0.5em; font-size: 0.85em; }
.cell { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.cell img { max-width: 100%; }
"""


def find_outputs(sources) -> list:
    """Study output folders (summary.json + meta.json) and atlas folders (atlas.json) under ``sources``."""
    found = []
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise ConfigError(f"{str(src)!r} does not exist: give the folder where studies wrote their outputs")
        candidates = [src] + sorted(p.parent for p in src.rglob("summary.json"))
        reports = {p.parent for p in src.rglob("notebook.html") if (p.parent / "index.html").exists()}
        for folder in candidates:
            if "runs" in folder.parts[len(src.parts):] or folder in found:
                continue
            if reports & ({folder} | set(folder.parents)):  # a report's copy of an output, not another output
                continue
            if (folder / "summary.json").exists() and ((folder / "meta.json").exists() or (folder / "atlas.json").exists()):
                found.append(folder)
    return found


def read_output_json(path) -> dict:
    """The JSON object in a study or atlas output's file ``path`` (``summary.json``, ``meta.json``);
    a missing file, or one that is not JSON or not a JSON object, is a RunError naming it."""
    path = Path(path)
    try:
        return read_json(path, missing=f"{str(path.parent)!r} holds no study output ({path.name} is missing)")
    except RunError as exc:
        raise RunError(f"{exc}; run the study again to rewrite it, or move the folder {str(path.parent)!r} "
                       "away") from None


def build_report(out, sources=("out",), explorers: bool = True, max_mb: float = 4.0, log=print,
                 skip=None) -> dict:
    """Write the report into ``out``; return the pages and the outputs it found.

    An output whose ``summary.json`` or ``meta.json`` cannot be read is an error (a RunError
    naming the file), or, given ``skip``, is left out after ``skip(folder, reason)``: the
    report rebuilt after a study must not fail the study for another study's broken folder.
    """
    from .explorer import build_explorer
    from .notebook import CELLS
    out = Path(out).resolve()
    sources = [Path(s) for s in (sources or ("out",))]
    for src in sources:
        if src.exists() and (src.resolve() == out or out in src.resolve().parents):
            raise ConfigError(f"--out {str(out)!r} is (or holds) the folder the report reads, {str(src)!r}; "
                              f"write the report into a folder of its own, e.g. --out {Path(src) / 'report'}")
    outputs = [f for f in find_outputs(sources) if f.resolve() != out and out not in f.resolve().parents]
    if not outputs:
        raise ConfigError(f"no study output found under {', '.join(map(str, sources))}: the report looks for "
                          "folders with summary.json and meta.json (what `mlpsim study NAME --out DIR` writes) or "
                          "atlas.json (`mlpsim atlas`); run a study first")
    out.mkdir(parents=True, exist_ok=True)
    cards, seed_folder, shown = [], None, []
    for folder in outputs:
        try:
            summary = read_output_json(folder / "summary.json")
            meta = read_output_json(folder / "meta.json") if (folder / "meta.json").exists() else None
        except RunError as exc:
            if skip is None:
                raise
            skip(folder, str(exc))
            continue
        slug = f"{len(shown):02d}-{folder.name}"
        shown.append(folder)
        dest = out / slug
        dest.mkdir(exist_ok=True)
        figures = sorted(p.name for p in folder.glob("*.png"))
        for name in figures + [p.name for p in folder.glob("*.gif")]:
            shutil.copy2(folder / name, dest / name)
        for name in ("summary.md", "summary.json", "meta.json", "cells.csv", "conditions.csv"):
            if (folder / name).exists():
                shutil.copy2(folder / name, dest / name)
        links = []
        if explorers and meta is not None:
            for label, info in list(meta.get("runs", {}).items())[:4]:
                page = dest / f"explorer-{_slug(label)}.html"
                try:
                    if (folder / page.name).exists():  # the study built it already
                        shutil.copy2(folder / page.name, page)
                    else:
                        build_explorer(info["run_dir"], page, max_mb=max_mb)
                    links.append((label, page.name))
                except Exception as exc:  # noqa: BLE001 - a run that moved or broke: say so on the card
                    links.append((label, None, str(exc)[:200]))
        if meta is not None and meta.get("study") == "seed":
            seed_folder = slug
        cards.append(_card(slug, folder, summary, figures, links))
        log(f"report: {folder} -> {dest}")
    index = _page("mlpsim report", [
        "<h1>mlpsim report</h1>",
        f"<p>{len(shown)} output(s) found under {html.escape(', '.join(map(str, sources)))}. "
        '<a href="notebook.html">The seed notebook, cell by cell</a>.</p>'] + cards)
    atomic_write_bytes(out / "index.html", index.encode())
    atomic_write_bytes(out / "notebook.html", _notebook_page(CELLS, seed_folder).encode())
    return {"index": out / "index.html", "notebook": out / "notebook.html", "outputs": shown}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(label)) or "run"


def _fmt(v) -> str:
    from ..claims import fmt
    return fmt(v)


def _card(slug, folder, summary, figures, links) -> str:
    from ..claims import fmt_p
    e = html.escape
    parts = [f'<div class="card" id="{e(slug)}">',
             f"<h2>{e(summary.get('title') or folder.name)}</h2>",
             f"<p class=\"note\">{e(str(folder))}</p>"]
    if summary.get("question"):
        parts.append(f"<p>{e(summary['question'])}</p>")
    verdicts = summary.get("verdicts") or []
    if verdicts:
        parts.append("<table><tr><th>claim</th><th>on</th><th>status</th><th>effect [95 % CI]</th><th>p</th>"
                     "<th>n</th></tr>")
        for v in verdicts:
            ci = v.get("ci") or [None, None]
            ci_text = f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci[0] is not None else ""
            parts.append(f"<tr><td>{e(v['claim'])}</td><td>{e(v.get('label') or '')}</td>"
                         f"<td class=\"{e(v['status'])}\">{e(v['status'])}</td><td>{e(v['effect_name'])} "
                         f"{_fmt(v['effect'])}{e(ci_text)}</td><td>{e(fmt_p(v['p_value']))}</td>"
                         f"<td>{v['n_instances']}</td></tr>")
        parts.append("</table>")
    regs = summary.get("regularities") or []
    if regs:
        parts.append("<table><tr><th>regularity</th><th>direction</th><th>conditions</th><th>label</th>"
                     "<th>p (Holm)</th></tr>")
        for r in regs:
            parts.append(f"<tr><td>{e(r['kind'])} {e(r['name'])}</td><td>{e(r['direction'])}</td>"
                         f"<td>{r['N']} of {r['M']}</td><td>{e(r['label'])}</td><td>{r['p_holm']:.2g}</td></tr>")
        parts.append("</table>")
    notes = summary.get("notes") or []
    if notes:
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes[:6]) + "</ul>")
        if len(notes) > 6:
            parts.append(f'<p class="note">{len(notes) - 6} more findings in <a href="{e(slug)}/summary.md">'
                         "summary.md</a>.</p>")
    if links:
        parts.append("<p>Explorers: " + ", ".join(
            f'<a href="{e(slug)}/{e(link[1])}">{e(link[0])}</a>' if link[1] else
            f"{e(link[0])} (not available: {e(link[2])})" for link in links) + "</p>")
    if figures:
        parts.append('<div class="figs">' + "".join(
            f'<a href="{e(slug)}/{e(f)}"><img src="{e(slug)}/{e(f)}" alt="{e(f[:-4])}" loading="lazy"></a>'
            for f in figures) + "</div>")
    parts.append(f'<p class="note">All of it: <a href="{e(slug)}/summary.md">summary.md</a>, '
                 f'<a href="{e(slug)}/summary.json">summary.json</a>.</p></div>')
    return "\n".join(parts)


def _notebook_page(cells, seed_folder) -> str:
    e = html.escape
    parts = ["<h1>The seed notebook, cell by cell</h1>",
             "<p>Each Wolfram Language cell of the notebook this project started from, what it does, and what "
             "does the same in mlpsim" + (", with its figure from the seed study." if seed_folder else
                                          ". Run <code>mlpsim study seed</code> and build the report again to see "
                                          "the figures.") + ' <a href="index.html">Back to the report</a>.</p>']
    for i, (code, what, equivalent, figure) in enumerate(cells, 1):
        img = (f'<img src="{e(seed_folder)}/{e(figure)}" alt="{e(figure[:-4])}" loading="lazy">'
               if figure and seed_folder else "")
        parts.append(f'<div class="card" id="cell-{i}"><h2>Cell {i}</h2><div class="cell"><div>'
                     f"<pre>{e(code)}</pre><p>{e(what)}</p></div><div><pre>{e(equivalent)}</pre>{img}</div>"
                     "</div></div>")
    return _page("The seed notebook, cell by cell", parts)


def _page(title: str, body) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
