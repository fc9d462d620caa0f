"""Doctests of the optional extras skip, with the reason, where the extra is absent."""
import importlib.util

import pytest

_EXTRAS = {"torch": ("symgrad/frameworks/torch.py", "symgrad/torch.py"),
           "jax": ("symgrad/frameworks/jax.py", "symgrad/jax.py")}


def pytest_collection_modifyitems(config, items):
    for module, paths in _EXTRAS.items():
        if importlib.util.find_spec(module) is not None:
            continue
        skip = pytest.mark.skip(reason=f"{module} is an optional extra: "
                                       f"pip install 'symgrad[{module}]'")
        for item in items:
            if any(str(item.fspath).endswith(p) for p in paths):
                item.add_marker(skip)
