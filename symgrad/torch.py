"""``symgrad.torch``: prove the backward PyTorch runs (docs/frameworks.md).

* :func:`check_function` — a custom ``torch.autograd.Function``'s hand-written backward;
* :func:`check_function_jvp` — its forward-mode rule (``jvp``);
* :func:`check_module` — PyTorch's own backward of a module or a function of tensors.

The implementation is :mod:`symgrad.frameworks.torch`; PyTorch is an optional extra
(``pip install 'symgrad[torch]'``).
"""
from .frameworks.torch import (check_function, check_function_jvp, check_module, interpret,
                               op_name)

__all__ = ["check_function", "check_function_jvp", "check_module", "interpret", "op_name"]
