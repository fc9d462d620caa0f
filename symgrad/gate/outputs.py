"""What the gate writes besides the terminal: JSON with every Result, JUnit XML the way
pytest writes it, and the failure text a person reads for an unmet expectation."""
from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

from ..prove.result import Result
from .cache import versions
from .run import exit_code
from .schema import DIMS, Outcome


def write_json(path, outcomes, input_errors=(), code: int | None = None):
    """Every outcome and input error, and the exit code (``code``, else the gate's)."""
    doc = {"versions": versions(),
           "exit_code": exit_code(outcomes, input_errors) if code is None else code,
           "input_errors": list(input_errors),
           "obligations": [o.to_json() for o in outcomes]}
    Path(path).write_text(json.dumps(doc, indent=2), encoding="utf-8")


def _classname(file: str) -> str:
    return file.replace("/", ".").removesuffix(".toml")


def write_junit(path, outcomes, seconds: float, input_errors=()):
    """JUnit XML the way pytest's xunit2 family writes it: testsuites/testsuite/testcase,
    a failure element for every unmet expectation, properties with versions and shapes,
    and an error element for every input error (as pytest does for a collection error)."""
    failures = sum(1 for o in outcomes if not o.met and o.verdict not in ("error", "internal"))
    errors = sum(1 for o in outcomes if o.verdict in ("error", "internal")) + len(input_errors)
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name="symgrad", errors=str(errors),
                          failures=str(failures), skipped="0",
                          tests=str(len(outcomes) + len(input_errors)),
                          time=f"{seconds:.3f}",
                          timestamp=datetime.now(timezone.utc).isoformat(),
                          hostname=platform.node())
    props = ET.SubElement(suite, "properties")
    for k, v in versions().items():
        ET.SubElement(props, "property", name=k, value=v)
    for e in input_errors:
        line = getattr(e, "line", None)
        case = ET.SubElement(suite, "testcase", classname=_classname(getattr(e, "file", "")),
                             name="input error" + (f" at line {line}" if line else ""),
                             time="0.000")
        ET.SubElement(case, "error", message=str(e), type="input").text = str(e)
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=_classname(o.file), name=o.title,
                             time=f"{o.seconds:.3f}")
        cp = ET.SubElement(case, "properties")
        for k, v in (("kind", o.kind), ("expect", o.expect), ("verdict", o.verdict),
                     ("cached", str(o.cached).lower()),
                     ("shapes", json.dumps(o.spec.get("shapes") or {d: o.spec[d] for d in DIMS
                                                                    if d in o.spec}))):
            ET.SubElement(cp, "property", name=k, value=v)
        if o.verdict in ("error", "internal"):
            ET.SubElement(case, "error", message=o.reason).text = o.reason
        elif not o.met:
            el = ET.SubElement(case, "failure", message=f"expected {o.expect}, got {o.verdict}"
                               + (f": {o.reason}" if o.reason else ""), type=o.verdict)
            el.text = failure_text(o)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def failure_text(o: Outcome) -> str:
    """What a person needs to see for an unmet expectation: the verdict, why and what to do
    next, the counterexample — as the terminal prints a Result."""
    lines = [f"{o.title}: expected {o.expect}, got {o.verdict}"]
    for d in o.results:
        if d["verdict"] == o.verdict and d["verdict"] != "proved":
            r = Result.from_json(d)
            lines.append(f"  {r.name}: {r.verdict} — {r.method}")
            lines += ["    " + line for line in r.findings()]
    return "\n".join(lines)
