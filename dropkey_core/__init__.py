"""DropKey attention, its baselines and variants, a registry of attention regularisers,
layer-wise schedules, injection into existing models and attention statistics. Depends on torch
only."""
from .adapters import UNTOUCHED, register_adapter
from .attention import (DropKeyAttentionMixin, DropKeyMultiheadAttention, DropKeySettings,
                        row_entropy, sampling_in_eval, set_regularisation)
from .chunked import chunked_dropkey_attention
from .functional import (BACKENDS, AttentionPlan, dropkey_attention, plan_attention,
                         sample_method_keep_mask)
from .hash_mask import HashMask
from .inject import (AttentionLayer, attention_entropy, attention_layers, inject_dropkey,
                     set_attention_stats)
from .masks import (restore_empty_rows, sample_block_keep_mask, sample_column_keep_mask,
                    sample_cross_keep_mask, sample_head_keep_mask, sample_keep_mask)
from .regularisers import REGULARISERS, Regulariser, get_regulariser, register_regulariser
from .schedules import SCHEDULES, layer_drop_ratios

__all__ = [
    "REGULARISERS", "Regulariser", "register_regulariser", "get_regulariser",
    "BACKENDS", "SCHEDULES", "UNTOUCHED",
    "dropkey_attention", "plan_attention", "AttentionPlan", "chunked_dropkey_attention",
    "HashMask", "sample_method_keep_mask",
    "sample_keep_mask", "sample_block_keep_mask", "sample_cross_keep_mask",
    "sample_column_keep_mask", "sample_head_keep_mask", "restore_empty_rows",
    "layer_drop_ratios",
    "DropKeySettings", "DropKeyAttentionMixin", "DropKeyMultiheadAttention", "row_entropy",
    "set_regularisation", "sampling_in_eval",
    "inject_dropkey", "attention_layers", "AttentionLayer", "set_attention_stats",
    "attention_entropy", "register_adapter",
]
