"""pytest plugin (entry point ``pytest11``): ``pytest obligations/`` collects every entry of
the obligation files (*.toml under a directory named ``obligations``) as a test item, so
``-k``, ``--junitxml`` and xdist work as for any test. A failure shows the verdict, the
reason and, for REFUTED, the witness. The ``symgrad_check`` fixture is
:func:`symgrad.testing.assert_vjp`, for ordinary test files."""
from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("symgrad", "symgrad obligations")
    group.addoption("--symgrad-no-cache", action="store_true", default=False,
                    help="Neither read nor write symgrad's proof cache (the one `symgrad "
                         "check` uses).")
    group.addoption("--symgrad-cache-dir", default=".symgrad-cache", metavar="DIR",
                    help="Where symgrad's proof cache lives (default: .symgrad-cache, as "
                         "for `symgrad check`).")


def _cache(config):
    """The session's proof cache (None with --symgrad-no-cache), opened once."""
    if config.getoption("symgrad_no_cache"):
        return None
    cache = getattr(config, "_symgrad_cache", None)
    if cache is None:
        from .gate import Cache
        cache = config._symgrad_cache = Cache(config.getoption("symgrad_cache_dir"))
    return cache


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
        cache = _cache(self.config)
        outcome = cache.get(self.obligation) if cache is not None else None
        cached = outcome is not None
        if outcome is None:
            outcome = run_one(self.obligation)
            if cache is not None:
                cache.put(self.obligation, outcome)
        self.user_properties.extend([("expect", outcome.expect), ("verdict", outcome.verdict),
                                     ("cached", "yes" if cached else "no")])
        if not outcome.met:
            raise ObligationNotMet(outcome)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ObligationNotMet):
            import shlex
            from .gate import failure_text
            o = excinfo.value.outcome
            text = failure_text(o) if o.verdict not in ("error", "internal") else o.reason
            return (f"{text}\nreproduce: pytest {shlex.quote(self.nodeid)} "
                    f"--symgrad-no-cache")
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, self.obligation.line - 1, f"{self.obligation.kind}: {self.obligation.title}"
