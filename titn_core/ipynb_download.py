"""Sphinx extension of the book (`_config.yml`): every chapter downloadable as a notebook.

sphinx-book-theme puts `.ipynb` in a page's download menu only when a launch button (Binder, ...) is configured,
and those need the repository's public URL. This offers it on every chapter: an executed chapter gives the notebook
myst-nb executed (with its outputs); a chapter of plain Markdown gives a notebook of its text.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
from myst_nb.core.read import read_myst_markdown_notebook
from myst_nb.sphinx_ext import OUTPUT_FOLDER


def write_notebook(outdir: Path, pagename: str, source: Path) -> str:
    """Put the page's notebook in `_sources/` (where the theme's download menu links) and return its name there."""
    name = f"{pagename}.ipynb"
    target = outdir / "_sources" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    executed = outdir.parent / OUTPUT_FOLDER / name
    if executed.is_file():
        shutil.copy2(executed, target)
    else:
        nbformat.write(read_myst_markdown_notebook(source.read_text("utf8")), target)
    return name


def offer_notebook(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """html-page-context hook, before the theme builds its header buttons from `ipynb_source`."""
    if doctree is None or context.get("ipynb_source") or context.get("page_source_suffix") != ".md":
        return
    context["ipynb_source"] = write_notebook(Path(app.outdir), pagename, Path(app.env.doc2path(pagename)))


def setup(app) -> dict:
    app.connect("html-page-context", offer_notebook, priority=450)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
