"""The documentation pages a report cites (static/*.md, e.g. the DAG theorem), rendered to
HTML pages of the report with markdown-it-py (CommonMark and tables; raw HTML in the
markdown is escaped, not passed through). A relative link to another .md page points to its
.html.

>>> title, body = markdown_page("# A *theorem*\\n\\nSee [the proof](dag-theorem.md#proof).")
>>> title
'A theorem'
>>> 'href="dag-theorem.html#proof"' in body
True
>>> "&lt;script&gt;" in markdown_page("x <script>")[1]
True
"""
from __future__ import annotations

import re

from markdown_it import MarkdownIt

_LOCAL_MD = re.compile(r"^(?![a-z][a-z0-9+.-]*:|/)([^#?]*)\.md(?=$|[#?])", re.I)


def markdown_page(text: str) -> tuple[str, str]:
    """(the first heading's text, the body as HTML)."""
    md = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")
    tokens = md.parse(text)
    title = ""
    for k, tok in enumerate(tokens):
        if tok.type == "heading_open" and not title:
            title = "".join(c.content for c in tokens[k + 1].children or []
                            if c.type in ("text", "code_inline"))
        for child in tok.children or []:
            if child.type == "link_open":
                child.attrSet("href", _LOCAL_MD.sub(r"\1.html", child.attrGet("href") or ""))
    return title, md.renderer.render(tokens, md.options, {})
