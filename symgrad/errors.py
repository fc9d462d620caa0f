"""Errors symgrad raises on bad input.

Every :class:`InputError` carries one sentence that names what is wrong; the CLI prints it
and exits with status 2, without a traceback.
"""


class InputError(ValueError):
    """The user's input (op name, shapes, rule, parameter) is wrong."""


class ShapeError(InputError):
    """A shape does not fit what an op, rule or limit expects."""


class RuleError(InputError):
    """A user-supplied forward or VJP rule failed or returned something malformed."""


class InternalError(RuntimeError):
    """A bug in symgrad itself (exit status 3)."""
