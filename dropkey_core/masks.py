"""Samplers for key-drop masks.

Every sampler takes the shape ``(B, H, Nq, Nk)`` of the attention logits and returns a boolean
*keep* mask broadcastable to it: ``True`` where query ``q`` may attend to key ``k``. The
unstructured sampler draws each entry independently; the column and head samplers draw one entry
per (batch, head, key) and per (batch, head), shared by every query (and key); the grid samplers
draw whole windows (``block``) or whole rows and columns (``cross``) of the key grid, per (batch,
head, query), and never drop prefix tokens such as the class token. A key grid may have several
levels (the feature maps of a multi-scale encoder); the grid samplers treat each on its own.
"""
from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

# (height, width), or a sequence of (height, width) levels; see grid_levels
KeyGrid = Union[Sequence[int], Sequence[Sequence[int]]]


def sample_keep_mask(
    shape: Sequence[int],
    drop_ratio: float,
    *,
    generator: Optional[torch.Generator] = None,
    device=None,
) -> torch.Tensor:
    """I.i.d. keep mask: each entry is dropped with probability ``drop_ratio``.

    Compares uniform 16-bit integers with a threshold, so no float tensor of the mask's size is
    built; ``drop_ratio`` is quantised to the nearest multiple of 2**-16 (an error of at most
    2**-17): below 2**-17 nothing is dropped, from 1 - 2**-17 on everything is. The integers are
    the four 16-bit lanes of full-range int64 draws: the generator's cost is per draw, so this
    is about twice as fast as drawing int16 one by one.
    """
    threshold = round(drop_ratio * 65536) - 32768
    if threshold > 32767:  # the quantised ratio is 1, and 32768 does not fit in int16
        return torch.zeros(tuple(shape), dtype=torch.bool, device=device)
    numel = math.prod(shape)
    words = torch.randint(-2 ** 63, 2 ** 63 - 1, ((numel + 3) // 4,), dtype=torch.int64,
                          generator=generator, device=device)
    bits = words.view(torch.int16)[:numel].view(tuple(shape))
    return bits >= threshold


def sample_column_keep_mask(
    shape: Sequence[int],
    drop_ratio: float,
    *,
    generator: Optional[torch.Generator] = None,
    device=None,
) -> torch.Tensor:
    """Key columns: each key of each (batch, head) is dropped for every query, with probability
    ``drop_ratio``. Shape ``(*lead, 1, Nk)``; the i.i.d. sampler's draws over that shape."""
    *lead, _, num_keys = shape
    return sample_keep_mask((*lead, 1, num_keys), drop_ratio, generator=generator, device=device)


def sample_head_keep_mask(
    shape: Sequence[int],
    drop_ratio: float,
    *,
    generator: Optional[torch.Generator] = None,
    device=None,
) -> torch.Tensor:
    """Whole heads: each (batch, head) is dropped with probability ``drop_ratio``. Shape
    ``(*lead, 1, 1)``, so it also broadcasts to the attention output ``(*lead, Nq, Dv)``."""
    *lead, _, _ = shape
    return sample_keep_mask((*lead, 1, 1), drop_ratio, generator=generator, device=device)


def grid_levels(key_grid: KeyGrid) -> tuple[tuple[int, int], ...]:
    """The levels of a key grid: ``(height, width)`` is one level, a sequence of such pairs is
    several, whose keys follow each other level by level (a multi-scale encoder attends over its
    flattened feature maps concatenated). A ValueError naming the value for anything else."""
    try:
        single = all(isinstance(side, numbers.Integral) for side in key_grid)
        levels = [tuple(level) for level in ([key_grid] if single else key_grid)]
    except TypeError:
        levels = []
    if not levels or not all(len(level) == 2 and all(
            isinstance(side, numbers.Integral) and not isinstance(side, bool) and side > 0
            for side in level) for level in levels):
        raise ValueError(f"key_grid {key_grid!r} is neither (height, width) nor a sequence of "
                         "(height, width) levels of positive integers")
    return tuple((int(height), int(width)) for height, width in levels)


def key_grid_levels(num_keys: int, num_prefix_keys: int,
                    key_grid: Optional[KeyGrid]) -> tuple[tuple[int, int], ...]:
    """The (height, width) levels of the keys after the prefix; without ``key_grid``, one square
    level. A ValueError when the levels do not hold exactly those keys."""
    grid_keys = num_keys - num_prefix_keys
    if key_grid is None:
        side = math.isqrt(max(grid_keys, 0))
        if side * side != grid_keys:
            raise ValueError(
                f"{grid_keys} grid keys do not form a square grid; pass key_grid=(height, width)")
        return ((side, side),)
    levels = grid_levels(key_grid)
    if sum(height * width for height, width in levels) != grid_keys:
        shown = " + ".join(f"{height}x{width}" for height, width in levels)
        raise ValueError(f"key_grid {shown} does not match {num_keys} keys with "
                         f"{num_prefix_keys} prefix keys")
    return levels


@lru_cache(maxsize=256)
def _block_seed_rate(drop_ratio: float, height: int, width: int, block_size: int) -> float:
    """Rate of block centres that makes the expected dropped fraction of the grid ``drop_ratio``.

    A key at grid position ``o`` is dropped when any of the ``c(o)`` centres whose window covers it
    fires, so the dropped fraction is ``mean(1 - (1 - g) ** c(o))``; solved for ``g`` by bisection.
    """
    cover = _cover_counts(height, width, block_size)
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        dropped = (1 - (1 - mid) ** cover).mean().item()
        low, high = (mid, high) if dropped < drop_ratio else (low, mid)
    return (low + high) / 2


def _cover_counts(height: int, width: int, block_size: int) -> torch.Tensor:
    """Number of in-grid window centres covering each grid position (windows clipped at edges)."""
    ones = torch.ones(1, 1, height, width, dtype=torch.float64)
    summed = F.avg_pool2d(ones, block_size, stride=1, padding=block_size // 2,
                          count_include_pad=True) * block_size ** 2
    return summed[..., :height, :width].round()


def _join_levels(level_keeps: list[torch.Tensor], num_prefix_keys: int) -> torch.Tensor:
    """The keep mask over all keys: the prefix keys (always kept), then each level's keys."""
    first = level_keeps[0]
    prefix = [first.new_ones(*first.shape[:-1], num_prefix_keys)] if num_prefix_keys else []
    parts = prefix + level_keeps
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def sample_block_keep_mask(
    shape: Sequence[int],
    drop_ratio: float,
    *,
    key_grid: Optional[KeyGrid] = None,
    num_prefix_keys: int = 0,
    block_size: int = 3,
    generator: Optional[torch.Generator] = None,
    device=None,
) -> torch.Tensor:
    """Drops square ``block_size`` windows of the key grid (clipped at its edges), per query.

    On a grid of several levels each level draws its own windows, which never reach into
    another level, at the rate that drops a fraction ``drop_ratio`` of that level.
    """
    *lead, num_keys = shape
    rows = math.prod(lead)
    level_keeps = []
    for height, width in key_grid_levels(num_keys, num_prefix_keys, key_grid):
        size = min(block_size, height, width)
        rate = _block_seed_rate(float(drop_ratio), height, width, size)
        centres = torch.rand(rows, 1, height, width, generator=generator, device=device) < rate
        dropped = F.max_pool2d(centres.float(), size, stride=1, padding=size // 2)
        level_keeps.append(dropped[..., :height, :width].reshape(*lead, height * width) == 0)
    return _join_levels(level_keeps, num_prefix_keys)


def sample_cross_keep_mask(
    shape: Sequence[int],
    drop_ratio: float,
    *,
    key_grid: Optional[KeyGrid] = None,
    num_prefix_keys: int = 0,
    generator: Optional[torch.Generator] = None,
    device=None,
) -> torch.Tensor:
    """Drops whole rows and whole columns of the key grid, per query.

    Each row and each column is dropped with probability ``r = 1 - sqrt(1 - p)``, so a key
    survives with probability ``(1 - r) ** 2 = 1 - p``. On a grid of several levels, the rows
    and columns are those of each level.
    """
    *lead, num_keys = shape
    line_ratio = 1.0 - math.sqrt(1.0 - drop_ratio)
    level_keeps = []
    for height, width in key_grid_levels(num_keys, num_prefix_keys, key_grid):
        row_keep = torch.rand(*lead, height, 1, generator=generator, device=device) >= line_ratio
        col_keep = torch.rand(*lead, 1, width, generator=generator, device=device) >= line_ratio
        level_keeps.append((row_keep & col_keep).reshape(*lead, height * width))
    return _join_levels(level_keeps, num_prefix_keys)


def as_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An SDPA-style mask as an additive one: a boolean mask (True = attend) becomes 0 / -inf in
    ``dtype``; an additive mask is returned as it is. The one boolean-to-additive conversion."""
    if mask.dtype != torch.bool:
        return mask
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, zero - float("inf"))


def allowed_keys(attn_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The boolean may-attend part of an SDPA-style mask (None when there is no mask)."""
    if attn_mask is None:
        return None
    return attn_mask if attn_mask.dtype == torch.bool else attn_mask > float("-inf")


def merge_masks(keep: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """One SDPA-style mask from a boolean keep mask and a caller's mask (boolean stays boolean)."""
    if attn_mask is None:
        return keep
    if attn_mask.dtype == torch.bool:
        return keep & attn_mask
    return attn_mask + as_additive(keep, attn_mask.dtype)


def restore_empty_rows(keep: torch.Tensor, allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Undo the drop for every query whose allowed keys were all dropped.

    Such a row is computed as if nothing had been dropped: it can neither become NaN (as
    ``-inf`` masking would give) nor uniform over all keys (as the paper's ``-1e12`` gives in
    float32, which ignores the logits and any attention mask). ``allowed`` is the boolean part of
    a caller's attention mask, broadcastable to ``keep``.
    """
    survivors = keep if allowed is None else keep & allowed
    has_survivor = survivors.any(dim=-1, keepdim=True)
    if keep.device.type == "cpu" and bool(has_survivor.all()):  # common; a GPU would sync here
        return keep
    return keep | ~has_survivor
