"""The composer: Transformer graphs built from tape nodes (DESIGN.md §4 layouts).

Weights multiply on the right (``x @ W``, W: d_in × d_out); no projection bias in MHA; the
score scale c defaults to 1/√head_dim, exact.

One module per family, each importing only those before it: ``attention`` (MHA, residual,
masked core and masked MHA), ``norm`` (LayerNorm), ``blocks`` (post-norm MHA, FFN, encoder
blocks), ``decoder`` (the GPT decoder block), ``llama`` (the LLaMA-style block); ``catalog`` maps the CLI's graph names to them.

>>> g = mha(n=2, d_model=2, heads=1, head_dim=2)
>>> g.values[:5], g.values[-1]
(['x', 'Wq', 'Wk', 'Wv', 'Wo'], 'out')
>>> len(mha(2, 2, 1, 2, layout="torchlean").nodes)
14
"""
from __future__ import annotations

from .attention import LAYOUTS, masked_core, masked_mha, mha, mha_residual
from .blocks import encoder_block, encoder_stack, ffn, mha_postnorm, prenorm_encoder_block
from .decoder import gpt_decoder_block
from .llama import llama_block
from .norm import DEFAULT_EPS, layer_norm

__all__ = ["mha", "mha_residual", "layer_norm", "mha_postnorm", "ffn", "encoder_block",
           "encoder_stack",
           "masked_core", "masked_mha", "gpt_decoder_block", "prenorm_encoder_block",
           "llama_block",
           "LAYOUTS", "DEFAULT_EPS"]
