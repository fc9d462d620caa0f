"""Real frameworks' code, traced into what symgrad proves: PyTorch (custom autograd
Functions, PyTorch's own backward of modules) through ATen graphs (:mod:`.torch`, the op
table :mod:`.aten`). PyTorch is an optional extra: ``pip install 'symgrad[torch]'``."""
