"""Naming user code on the command line: ``module.path:Name``."""
from __future__ import annotations

import importlib
import os
import sys

from ..errors import InputError


def load(target: str):
    """The object a ``module.path:Name`` (or ``module.path:Name.attr``) names; the current
    directory is on the import path. One sentence when it cannot be found."""
    if ":" not in target:
        raise InputError(f"cannot read {target!r}: write module.path:Name, e.g. "
                         f"mylib.ops:FusedGelu")
    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import {module_name!r} (from {target!r}): {exc}") from None
    except Exception as exc:   # noqa: BLE001 - the user's module failed while importing
        raise InputError(f"importing {module_name!r} (from {target!r}) raised "
                         f"{type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{module_name} has no attribute {attr!r} (from {target!r})")
        obj = getattr(obj, part)
    return obj
