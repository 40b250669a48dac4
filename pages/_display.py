"""How the pages show text, figures and errors that came from files: :func:`md` escapes anything from a file, a
manifest, a model card, a DICOM tag or a user before it goes into Markdown; :func:`chart` draws a figure with no
markup a file could carry; :func:`show_error` shows a Glassbox error as written; :func:`heading` draws a page's
title from the page table."""
from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from data_adapters.errors import GlassboxError
from evaluation.figures import plain_figure
from pages._navigation import HEADINGS


def heading(page_file: str) -> None:
    """Draw the heading the page table (:data:`pages._navigation.PAGES`) gives the page in ``page_file`` (a page
    passes its ``__file__``): a page's title is written once, in the table."""
    stem = Path(page_file).stem
    if stem not in HEADINGS:
        raise KeyError(f"page {stem!r} is not in pages._navigation.PAGES: add it there")
    st.title(HEADINGS[stem])


def chart(where, fig, **kwargs) -> None:
    """Draw ``fig`` in ``where`` (``st`` or a column) with no markup a file could carry (:func:`plain_figure`)."""
    where.plotly_chart(plain_figure(fig), **kwargs)


def md(value) -> str:
    """``value`` (anything that came from a file, a manifest, a model card, a DICOM tag or a user) made safe to put
    inside ``st.markdown``, a caption, a label, a banner or an error: the characters that open a construct
    (``[ ] < > ! * _ ` ~ $ | # { } \\``) are backslash-escaped, ``://`` and ``www.`` are broken so no bare URL
    becomes a link, a leading list or heading marker is escaped, and line breaks become spaces. So
    ``![x](http://host/p.png)`` shows as text and fetches nothing, ``[login](http://phish)`` is no link, ``:red[…]``
    no colour, ``$x$`` no formula, while ``i0.png: file not found`` reads as written (CommonMark §2.4: an escaped
    punctuation character renders as itself)."""
    text = " ".join(str(value).splitlines())
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
    text = re.sub(r"(?<=\w)://", lambda m: ":\\/\\/", text)  # http://x shows as written, but is no autolink
    text = re.sub(r"(?i)\b(www)\.", lambda m: m.group(1) + "\\.", text)
    return _leading(text)


def _leading(text: str) -> str:
    """A leading list marker (``-``, ``+``, ``1.``, ``1)``) escaped, so the text is never a list item."""
    m = re.match(r"(\s*)([-+]|\d+[.)])", text)
    if not m:
        return text
    marker = m.group(2)
    escaped = "\\" + marker if marker in "-+" else marker[:-1] + "\\" + marker[-1]
    return m.group(1) + escaped + text[m.end():]


_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]<>!~$|#]")


def show_error(error: GlassboxError) -> None:
    """A Glassbox error on the page: its message names files, fields and values that came from files, so it is
    escaped (:func:`md`) and shows as written."""
    st.error(md(str(error)))
