"""HTML reports, parsed (never string-compared): the index lists every obligation with its
verdict, a refuted page shows its witness, MathML and highlighted source are present, user
strings are escaped; and a real browser renders them (skipped without Chromium)."""
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from symgrad.cli import main


class Page(HTMLParser):
    """Elements by id, the rows of the obligations table, and every tag seen."""

    def __init__(self, path):
        super().__init__(convert_charrefs=True)
        self.ids, self.rows, self.tags, self.text = {}, [], [], []
        self._row = self._cell = None
        self._stack = []
        self.feed(Path(path).read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids[a["id"]] = {"tag": tag, "attrs": a, "text": []}
            self._stack.append(a["id"])
        else:
            self._stack.append(None)
        if tag == "tr" and "data-verdict" in a:
            self._row = {"attrs": a, "cells": []}
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if self._stack:
            self._stack.pop()
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        for ident in self._stack:
            if ident is not None:
                self.ids[ident]["text"].append(data)

    def section_text(self, ident):
        return " ".join(" ".join(self.ids[ident]["text"]).split())


GATE = '''
[[node]]
op = "softmax"
shapes = ["2x3"]
name = "softmax <b>bold</b> & co"

[[mutant]]
mutant = "softmax_sign"

[[graph]]
graph = "mha"
'''


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "obligations").mkdir()
    (tmp / "obligations" / "gate.toml").write_text(GATE)
    result = CliRunner().invoke(main, ["check", str(tmp / "obligations"), "--no-cache",
                                       "-j", "1", "--report", str(tmp / "html")])
    assert result.exit_code == 1, result.output   # the mutant is expected proved here
    return tmp / "html"


def test_index_lists_every_obligation_with_its_verdict(report):
    page = Page(report / "index.html")
    rows = {r["cells"][0]: r for r in page.rows}
    assert len(rows) == 3
    titles = sorted(rows)
    assert titles[0].startswith("graph mha (n=2, d_model=2, heads=1, head_dim=2)")
    assert rows[titles[1]]["attrs"]["data-verdict"] == "refuted"
    assert rows[titles[1]]["attrs"]["data-met"] == "no"
    assert {r["attrs"]["data-verdict"] for r in page.rows} == {"proved", "refuted"}
    assert "1 proved" not in page.section_text("summary")
    assert "2 proved" in page.section_text("summary") and "1 refuted" in page.section_text(
        "summary")
    assert any(tag == "select" and a.get("id") == "verdict-filter" for tag, a in page.tags)
    # offline: no script or stylesheet from the network
    assert all(not a.get("src", "").startswith("http") and not a.get("href", "").startswith(
        "http") for tag, a in page.tags if tag in ("script", "link"))


def test_user_strings_are_escaped(report):
    raw = (report / "index.html").read_text()
    assert "softmax &lt;b&gt;bold&lt;/b&gt; &amp; co" in raw and "<b>bold</b>" not in raw


def test_refuted_page_shows_the_witness_and_mathml(report):
    page_path = next(p for p in report.glob("obligation-*.html")
                     if "softmax_sign" in p.read_text())
    page = Page(page_path)
    assert page.section_text("verdict") == "refuted"
    witness = page.section_text("witness")
    assert "differing entry x[" in witness and "certified enclosure" in witness
    assert "Point g[0,0]" in witness
    assert "math" in [t for t, _ in page.tags]
    assert page.ids["forward-math"]["tag"] == "div"
    assert page.ids["formula-math"]["tag"] == "div"   # the general formula, too
    assert any(t == "div" and "source" in a.get("class", "") for t, a in page.tags)


def test_graph_page_has_the_tape_and_three_kinds_of_evidence(report):
    (graph_page,) = report.glob("graph-*.html")
    page = Page(graph_page)
    assert page.ids["tape"]["tag"] == "section"
    rects = [a for t, a in page.tags if t == "rect"]
    import symgrad as sg
    g = sg.models.mha(2, 2, 1, 2)
    assert len(rects) == len(g.values)   # one box per tape value
    # one edge per value a node reads (a value read twice by one node: one edge, marked ×2)
    edges = [a for t, a in page.tags if t == "path" and a.get("class") == "edge"]
    assert len(edges) == len({(r, k) for k, n in enumerate(g.nodes) for r in n.reads})
    ev = page.section_text("evidence")
    assert "node matmul" in ev and "DAG corollary" in ev and "end to end" in ev
    assert "Saved tensors" in page.section_text("saved")
    # the DAG theorem is a page of the report, rendered from markdown, and linked as such
    assert (report / "dag-theorem.html").exists() and not (report / "dag-theorem.md").exists()
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert "dag-theorem.html" in links and not any(h.endswith(".md") for h in links)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                                    "(Debian package 'chromium'); the browser test needs it")
CHROMIUM_RUN = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
                "--allow-file-access-from-files", "--virtual-time-budget=5000"]


def browser_findings(probe: Path) -> dict:
    """Load ``probe`` (a page whose script writes JSON into <pre id="out">) in headless
    Chromium and return that JSON."""
    dom = subprocess.run(CHROMIUM_RUN + ["--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    out = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert out, f"the probe page wrote nothing: {dom[:500]}"
    return json.loads(html.unescape(out.group(1)))


def screenshot(page: Path, shot: Path, size="1280,900"):
    subprocess.run(CHROMIUM_RUN + [f"--screenshot={shot}", f"--window-size={size}",
                                   page.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 1000, shot


@needs_chromium
def test_a_real_browser_renders_mathml_and_filters_by_verdict(report, tmp_path):
    probe = report / "probe.html"
    # the probe loads the index and a refuted page in iframes from the file system, measures
    # the MathML and applies the filter, and writes what it found into its own DOM
    refuted = next(p.name for p in report.glob("obligation-*.html")
                   if "softmax_sign" in p.read_text())
    probe.write_text(f'''<!DOCTYPE html><html><body><pre id="out">waiting</pre>
<iframe id="a" src="index.html" width="1200" height="800"></iframe>
<iframe id="b" src="{refuted}" width="1200" height="800"></iframe>
<script>
var done = 0, res = {{}};
function fin() {{ if (++done < 2) return; document.getElementById("out").textContent = JSON.stringify(res); }}
document.getElementById("a").onload = function () {{
  var d = this.contentDocument, f = d.getElementById("verdict-filter");
  f.value = "refuted"; f.dispatchEvent(new Event("change"));
  var rows = Array.from(d.querySelectorAll("#obligations tbody tr"));
  res.visible = rows.filter(function (r) {{ return r.offsetHeight > 0; }}).map(function (r) {{ return r.dataset.verdict; }});
  res.total = rows.length; fin();
}};
document.getElementById("b").onload = function () {{
  var m = this.contentDocument.querySelector("#forward-math math").getBoundingClientRect();
  res.math = [m.width, m.height]; fin();
}};
</script></body></html>''')
    found = browser_findings(probe)
    assert found["total"] == 3 and found["visible"] == ["refuted"]
    assert found["math"][0] > 0 and found["math"][1] > 0
    screenshot(report / "index.html", tmp_path / "index.png")
