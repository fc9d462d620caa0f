"""The catalog of graphs by the names the CLI and the gate use: name → builder, the sizes
it takes and the options that apply to it."""
from __future__ import annotations

from .. import models

GRAPHS = {
    "mha": ("mha", ("n", "d_model", "heads", "head_dim"), ("layout",)),
    "residual": ("mha_residual", ("n", "d_model", "heads", "head_dim"), ("layout",)),
    "layernorm": ("layer_norm", ("n", "d_model"), ("form",)),
    "postnorm": ("mha_postnorm", ("n", "d_model", "heads", "head_dim"), ("layout",)),
    "ffn": ("ffn", ("n", "d_model", "d_ff"), ()),
    "encoder": ("encoder_block", ("n", "d_model", "heads", "head_dim", "d_ff"), ("layout",)),
    "masked": ("masked_core", ("n", "heads", "head_dim"), ("causal",)),
    "masked-mha": ("masked_mha", ("n", "d_model", "heads", "head_dim"), ("layout",)),
    "decoder": ("gpt_decoder_block", ("n", "d_model", "heads", "head_dim", "d_ff"),
                ("layout", "fixed_weights")),
    "prenorm": ("prenorm_encoder_block", ("n", "d_model", "heads", "head_dim", "d_ff"),
                ("layout",)),
    "stack": ("encoder_stack", ("n", "d_model", "heads", "head_dim", "d_ff"),
              ("layout", "layers")),
    "llama": ("llama_block", ("n", "d_model", "heads", "kv_heads", "head_dim", "d_ff"), ()),
}

#: sizes only some graphs take, and their value when not given
OPTIONAL_DIMS = {"kv_heads": 1}


#: what a graph can be told beyond its name; which of them apply is in GRAPHS
GRAPH_OPTIONS = ("n", "d_model", "heads", "head_dim", "d_ff", "layout", "form",
                 "fixed_weights", "layers", "kv_heads")


def graph_option_error(key: str, graph: str, shown: str | None = None) -> str | None:
    """None when the option (or obligation key) ``key`` applies to ``graph``, else the
    sentence saying which graphs it applies to."""
    def applies(g):
        return key not in GRAPH_OPTIONS or key in GRAPHS[g][1] + GRAPHS[g][2]
    if applies(graph):
        return None
    where = [g for g in GRAPHS if applies(g)]
    names = ", ".join(where[:-1]) + " and " + where[-1] if len(where) > 1 else where[0]
    return (f"{shown or key} applies to the {names} graph{'s' if len(where) > 1 else ''}, "
            f"not to {graph}")


def build_graph(name, dims, layout, form, fixed_weights=False):
    """The graph ``name`` of the catalog at the sizes ``dims`` (a dict by option name)."""
    builder, args, extra = GRAPHS[name]
    kwargs = {}
    if fixed_weights and "fixed_weights" in extra:
        kwargs["fixed_weights"] = True
    if "layout" in extra:
        kwargs["layout"] = layout
    if "form" in extra:
        kwargs["form"] = form
    if "causal" in extra:
        kwargs["causal"] = True
    if "layers" in extra:
        kwargs["layers"] = dims.get("layers", 2)
    positional = [dims[a] if a in dims else OPTIONAL_DIMS[a] for a in args]
    if builder == "layer_norm":   # LayerNorm of an n × d_model input
        return models.layer_norm(*positional, **kwargs)
    return getattr(models, builder)(*positional, **kwargs)
