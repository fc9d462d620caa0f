"""pytest plugin (entry point ``pytest11``): ``pytest obligations/`` collects every entry of
the obligation files (*.toml under a directory named ``obligations``) as a test item, so
``-k``, ``--junitxml`` and xdist work as for any test. A failure shows the verdict, the
reason and, for REFUTED, the witness. The ``symgrad_check`` fixture is
:func:`symgrad.testing.assert_vjp`, for ordinary test files."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def symgrad_check():
    """:func:`symgrad.testing.assert_vjp`: ``symgrad_check(forward, vjp, shapes=…)``
    fails the test with the counterexample when the rule is wrong."""
    from .testing import assert_vjp
    return assert_vjp


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix == ".toml" and "obligations" in file_path.parent.parts:
        return ObligationFile.from_parent(parent, path=file_path)
    return None


class ObligationFileError(Exception):
    """An obligation file that cannot be read (malformed TOML, unknown key, …)."""


class ObligationNotMet(Exception):
    def __init__(self, outcome):
        super().__init__(outcome.title)
        self.outcome = outcome


class ObligationFile(pytest.File):
    def collect(self):
        from .gate import load_file
        try:
            shown = str(self.path.relative_to(self.config.rootpath))
        except ValueError:
            shown = str(self.path)
        obligations, errors = load_file(self.path, shown)
        if errors:
            raise ObligationFileError("\n".join(errors))
        for ob in obligations:
            yield ObligationItem.from_parent(self, name=ob.title, obligation=ob)


class ObligationItem(pytest.Item):
    def __init__(self, *, obligation, **kwargs):
        super().__init__(**kwargs)
        self.obligation = obligation

    def runtest(self):
        from .gate import run_one
        outcome = run_one(self.obligation)
        self.user_properties.extend([("expect", outcome.expect), ("verdict", outcome.verdict)])
        if not outcome.met:
            raise ObligationNotMet(outcome)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ObligationNotMet):
            from .gate import failure_text
            o = excinfo.value.outcome
            return failure_text(o) if o.verdict not in ("error", "internal") else o.reason
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, self.obligation.line - 1, f"{self.obligation.kind}: {self.obligation.title}"
