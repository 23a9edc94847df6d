"""Put DropKey into existing models without touching their parameters.

``inject_dropkey`` finds every attention module with a registered adapter, switches its class to
a subclass whose forward routes attention through DropKey, and gives it per-layer settings. The
module object, its children and its parameters stay the same, so state-dict keys and weights are
unchanged and a checkpoint saved before injection loads after it.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch.nn as nn

from .adapters import ADAPTERS, UNTOUCHED, WEIGHTS_DISCARDED_BY, adapted_class, qualified_name
from .attention import DropKeyAttentionMixin, DropKeySettings
from .masks import KeyGrid, grid_levels
from .regularisers import get_regulariser
from .schedules import layer_drop_ratios

_LAST_INDEX = re.compile(r"^(.*\.\d+)(?:\.|$)")


def layer_key(module_name: str) -> str:
    """The layer an attention module belongs to: its name up to the last numeric component.

    ``blocks.3.attn`` -> ``blocks.3``; ``decoder.layers.0.self_attn.attn`` and
    ``decoder.layers.0.cross_attn.attn`` share ``decoder.layers.0``, so both get layer 0's ratio.
    """
    match = _LAST_INDEX.match(module_name)
    return match.group(1) if match else module_name


@dataclass
class AttentionLayer:
    name: str
    type: str
    method: str
    drop_ratio: float
    note: str = ""

    def as_dict(self) -> dict:
        record = {"name": self.name, "method": self.method, "drop_ratio": self.drop_ratio}
        if self.note:
            record["note"] = self.note
        return record


def _attention_modules(model: nn.Module):
    """(name, module) of every adaptable attention module, outermost first, in model order."""
    for name, module in model.named_modules():
        if isinstance(module, DropKeyAttentionMixin) or qualified_name(type(module)) in ADAPTERS:
            yield name, module


def _grid_owners(model: nn.Module) -> list[tuple[str, tuple, int]]:
    """(name, key grid, prefix-token count) of every timm ViT-style (sub)model, outermost first."""
    owners = []
    for name, module in model.named_modules():
        grid = getattr(getattr(module, "patch_embed", None), "grid_size", None)
        if grid is not None:
            owners.append((name, tuple(grid), int(getattr(module, "num_prefix_tokens", 0))))
    return owners


def _default_grid(owners: list[tuple[str, tuple, int]], module_name: str):
    """Key grid and prefix count of the innermost ViT-style model containing ``module_name``."""
    for owner, grid, prefix in reversed(owners):
        if owner == "" or module_name.startswith(owner + "."):
            return grid, prefix
    return None, 0


def inject_dropkey(
    model: nn.Module,
    drop_ratio: float,
    *,
    method: str = "dropkey",
    schedule: str = "linear_decrease",
    start: Optional[float] = None,
    end: Optional[float] = None,
    ratios: Optional[Sequence[float]] = None,
    include: Optional[str] = None,
    exclude: Optional[str] = None,
    groups: Optional[Iterable[str]] = None,
    key_grid: Optional[KeyGrid] = None,
    num_prefix_keys: Optional[int] = None,
    block_size: int = 3,
    record_stats: bool = False,
) -> list[AttentionLayer]:
    """Replace the attention of ``model`` in place and return what was replaced.

    Args:
        drop_ratio: base ratio of the schedule (see :mod:`dropkey_core.schedules`).
        method: a registered regulariser (:mod:`dropkey_core.regularisers`): ``none``,
            ``attn_drop``, ``dropkey``, ``dropkey_block``, ``dropkey_cross``, ``dropkey_column``,
            ``drophead`` or a project's own.
        schedule, start, end, ratios: the per-layer schedule, applied over layers in depth order.
            Layers are found with :func:`layer_key`.
        include, exclude: regular expressions on module names (``re.search``).
        groups: regular expressions, one per stack (e.g. ``[r"^encoder\\.", r"^decoder\\."]``);
            each stack gets its own schedule over its own layers. Modules in no group are skipped.
        key_grid, num_prefix_keys: the key grid for the structured methods; by default read from
            the ``patch_embed.grid_size`` and ``num_prefix_tokens`` of the timm model that holds
            the attention module. ``key_grid`` is ``(height, width)`` or, for keys that are the
            flattened feature maps of several levels one after another, a sequence of them
            (``((16, 16), (8, 8))``); the structured methods then act within each level. The
            keys are the prefix keys, then the grid's. A structured method on a stack with no
            key grid is a ValueError naming the stack here; a grid that does not match the keys
            is one in the forward. Neither ever runs as unstructured DropKey.
        record_stats: record the mean attention entropy of each layer in eval mode.

    Nothing is changed unless every module's settings are valid.
    """
    needs_key_grid = get_regulariser(method).needs_key_grid
    if key_grid is not None:
        grid_levels(key_grid)  # a malformed grid fails here, before any module is changed
    owners = _grid_owners(model)
    patterns = [re.compile(g) for g in groups] if groups is not None else [re.compile("")]

    stacks: list[OrderedDict[str, list[tuple[str, nn.Module]]]] = [OrderedDict() for _ in patterns]
    for name, module in _attention_modules(model):
        if include is not None and not re.search(include, name):
            continue
        if exclude is not None and re.search(exclude, name):
            continue
        for pattern, stack in zip(patterns, stacks):
            if pattern.search(name):
                stack.setdefault(layer_key(name), []).append((name, module))
                break

    settings: list[tuple[nn.Module, DropKeySettings]] = []
    for pattern, stack in zip(patterns, stacks):
        if not stack:
            continue
        layer_ratios = layer_drop_ratios(drop_ratio, len(stack), schedule, start=start, end=end,
                                         ratios=ratios)
        for ratio, members in zip(layer_ratios, stack.values()):
            for name, module in members:
                grid, prefix = _default_grid(owners, name)
                grid = grid if key_grid is None else key_grid
                if needs_key_grid and grid is None:
                    where = "the model" if groups is None else f"stack {pattern.pattern!r}"
                    raise ValueError(
                        f"method {method!r} needs a key grid, and {where} has none at {name!r} "
                        "(no key_grid given and no enclosing model with patch_embed.grid_size); "
                        "give key_grid or leave this stack out")
                settings.append((module, DropKeySettings(
                    method=method, drop_ratio=0.0 if method == "none" else ratio, key_grid=grid,
                    num_prefix_keys=prefix if num_prefix_keys is None else num_prefix_keys,
                    block_size=block_size, record_stats=record_stats)))
    for module, module_settings in settings:
        if not isinstance(module, DropKeyAttentionMixin):
            module.__class__ = adapted_class(type(module))
        module.dropkey = module_settings
    for wrapper in model.modules():
        child = getattr(wrapper, WEIGHTS_DISCARDED_BY.get(qualified_name(type(wrapper)), ""), None)
        if isinstance(child, DropKeyAttentionMixin):
            child.dropkey.weights_discarded = True
    return attention_layers(model)


def attention_layers(model: nn.Module) -> list[AttentionLayer]:
    """Every attention module of ``model``: the DropKey-capable ones with their settings, and the
    known non-dot-product ones (e.g. deformable attention), which are left as they are."""
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, DropKeyAttentionMixin):
            origin = getattr(type(module), "adapted_from", type(module))
            layers.append(AttentionLayer(name, qualified_name(origin), module.dropkey.method,
                                         module.dropkey.drop_ratio))
        elif qualified_name(type(module)) in UNTOUCHED:
            layers.append(AttentionLayer(name, qualified_name(type(module)), "untouched", 0.0,
                                         UNTOUCHED[qualified_name(type(module))]))
    return layers


def set_attention_stats(model: nn.Module, enabled: bool = True) -> None:
    """Turn entropy recording on or off (it is done in eval mode only) and reset the meters."""
    for _, module in _attention_modules(model):
        if isinstance(module, DropKeyAttentionMixin):
            module.dropkey.record_stats = enabled
            module.dropkey.entropy_sum, module.dropkey.entropy_rows = 0.0, 0


def attention_entropy(model: nn.Module) -> dict[str, float]:
    """Mean attention entropy (nats) per layer recorded since the last reset, by module name."""
    return {name: module.dropkey.entropy_sum / module.dropkey.entropy_rows
            for name, module in _attention_modules(model)
            if isinstance(module, DropKeyAttentionMixin) and module.dropkey.entropy_rows}
