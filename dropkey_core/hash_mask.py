"""Counter-based DropKey masks: ``keep(b, h, q, k) = hash(seed, b, h, q, k) >= threshold``.

Torch's CPU generator costs about 5 ns per element on a single thread, more than the attention
it regularises. This hash is a handful of vectorised int32 passes over cache-sized blocks (about
1 ns per element per thread), and any block of the mask can be recomputed from the seed alone,
which is what lets :mod:`.chunked` train long sequences without storing an N x N mask.

The hash: every flattened (b, h, q) row and every key index get a full ``lowbias32`` hash
(Wellons' integer finaliser) of their counter and a seed half; an element is the product-xorshift
mix ``m2 * xorshift15(m1 * (row ^ key))`` of the two, dropped when it falls below a threshold.
Its top bits depend on every input bit, so drops are independent across rows, keys, heads and
batches (checked in ``tests/test_core_fast.py``). The ratio is quantised to the nearest
multiple of 2**-31: below 2**-32 nothing is dropped, from 1 - 2**-32 on everything is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

_M1 = 0x7FEB352D
_M2 = 0x846CA68B - (1 << 32)  # int32 view of the second lowbias32 multiplier
_GOLDEN = 0x9E3779B9 - (1 << 32)
_NEG_INF_BITS = -0x800000  # bit pattern of float32 -inf (0xFF800000) as int32
BLOCK_ELEMENTS = 1 << 18  # elements hashed per block: two int32 buffers stay in a 2 MB L2 cache


def _int32(value: int) -> int:
    """``value`` wrapped to a signed 32-bit integer."""
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


def _shift_xor(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``x ^= x >>> shift`` on int32 (torch shifts arithmetically, so mask the sign copies)."""
    return x.bitwise_xor_((x >> shift).bitwise_and_((1 << (32 - shift)) - 1))


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 (Wellons' integer hash) of int32 counters, wrapping like uint32 arithmetic."""
    x = _shift_xor(x.clone(), 16).mul_(_M1)
    x = _shift_xor(x, 15).mul_(_M2)
    return _shift_xor(x, 16)


@dataclass(frozen=True)
class HashMask:
    """The DropKey mask of one attention call, defined by a seed; any part is recomputable."""

    seed: int
    drop_ratio: float

    @classmethod
    def draw(cls, drop_ratio: float, generator: Optional[torch.Generator] = None,
             device=None) -> "HashMask":
        """One seed from ``generator`` (or the global generator), so seeding still reproduces."""
        seed = torch.randint(0, 1 << 62, (), generator=generator, device=device)
        return cls(int(seed), float(drop_ratio))

    @property
    def threshold(self) -> int:
        """Hashes (signed int32, uniform) below this are dropped; even, see :meth:`fill_bias`."""
        return -(1 << 31) + 2 * round(self.drop_ratio * (1 << 31))

    def row_keys(self, lead: Sequence[int], num_queries: int, rows: slice, device=None):
        """Keys of query rows ``rows`` of every leading index, flattened: (prod(lead) * len,)."""
        num_lead = 1
        for size in lead:
            num_lead *= size
        queries = torch.arange(num_queries, dtype=torch.int32, device=device)[rows]
        counters = torch.arange(num_lead, dtype=torch.int32, device=device)[:, None] * num_queries
        counters = (counters + queries).mul_(_GOLDEN).add_(_int32(self.seed))
        return mix32(counters.flatten())

    def column_keys(self, num_keys: int, device=None) -> torch.Tensor:
        counters = torch.arange(num_keys, dtype=torch.int32, device=device)
        return mix32(counters.mul_(_GOLDEN).add_(_int32(self.seed >> 32)))

    def drop_bias(self, shape: Sequence[int], rows: slice = slice(None), device=None,
                  out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Additive float32 mask (0 keep, -inf drop) for query rows ``rows`` of logits ``shape``.

        Returns shape (*lead, len(rows), Nk), written into the int32 buffer ``out`` when given
        (at least that many elements). Never restores empty rows: callers do that, after
        combining it with their own attention mask.
        """
        *lead, num_queries, num_keys = shape
        row_keys = self.row_keys(lead, num_queries, rows, device)
        size = row_keys.numel() * num_keys
        if out is None:
            out = torch.empty(size, dtype=torch.int32, device=device)
        out = out[:size].view(-1, num_keys)
        self.fill_bias(out, row_keys, self.column_keys(num_keys, device))
        return out.view(torch.float32).view(*lead, -1, num_keys)

    def fill_bias(self, out: torch.Tensor, row_keys: torch.Tensor, column_keys: torch.Tensor):
        """Hash every (row, key) pair into int32 ``out`` (rows x keys) as float32 0 / -inf bits.

        Eager torch works block by block, in place, so each block's passes stay in cache; with
        :func:`use_compiled_hash` one fused compiled loop does it. The drop test
        ``hash < threshold`` is done arithmetically, ``((hash >> 1) - threshold / 2) >> 31`` is
        all ones exactly when it holds (threshold is even), since bool ops and ``where`` are
        several times slower on CPU than shifts.
        """
        compiled = _compiled_fill_for(out)
        if compiled is not None:
            try:
                compiled(out, row_keys, column_keys,
                         torch.tensor(self.threshold >> 1, dtype=torch.int32))
                return
            except Exception:  # noqa: BLE001 - any compiler failure: the eager loop is exact too
                use_compiled_hash(False)
        rows_per_block = max(1, BLOCK_ELEMENTS // max(1, out.shape[1]))
        scratch = torch.empty(min(rows_per_block, out.shape[0]), out.shape[1], dtype=torch.int32,
                              device=out.device)
        half_threshold = self.threshold >> 1
        for start in range(0, out.shape[0], rows_per_block):
            x = out[start:start + rows_per_block]
            tmp = scratch[:x.shape[0]]
            torch.bitwise_xor(row_keys[start:start + rows_per_block, None], column_keys, out=x)
            x.mul_(_M1)
            torch.bitwise_right_shift(x, 15, out=tmp).bitwise_and_(0x1FFFF)
            x.bitwise_xor_(tmp).mul_(_M2)
            x.bitwise_right_shift_(1).sub_(half_threshold).bitwise_right_shift_(31)
            x.bitwise_and_(_NEG_INF_BITS)

    def keep_mask(self, shape: Sequence[int], device=None) -> torch.Tensor:
        """Boolean keep mask of logits ``shape`` (B, H, Nq, Nk), as materialised by ``hash``."""
        return self.drop_bias(shape, device=device) == 0


def _fill_fused(out, row_keys, column_keys, half_threshold):
    """The same hash as :meth:`HashMask.fill_bias`, written out of place for torch.compile."""
    x = (row_keys[:, None] ^ column_keys) * _M1
    x = (x ^ ((x >> 15) & 0x1FFFF)) * _M2
    out.copy_((((x >> 1) - half_threshold) >> 31) & _NEG_INF_BITS)


COMPILE_MIN_ELEMENTS = 1 << 22  # automatic mode: fills at least this large run compiled
_compile_setting = {"1": True, "0": False}.get(os.environ.get("DROPKEY_COMPILE_HASH", ""))
_compiled_fill = None


def use_compiled_hash(enabled: Optional[bool] = True) -> bool:
    """Generate masks with one torch.compile'd loop (3-4x faster than eager torch on CPU).

    ``None`` (the default, or ``DROPKEY_COMPILE_HASH`` unset) is automatic: only fills of at
    least ``COMPILE_MIN_ELEMENTS`` run compiled, so the one-off compilation (15-30 s on first use;
    ``dynamic=True`` covers all shapes, and inductor's on-disk cache serves later processes) is
    paid only by processes with masks large enough to earn it back. ``True``
    (``DROPKEY_COMPILE_HASH=1``) compiles every fill, ``False`` (``=0``) none. Either way the
    masks are identical; if compiling fails, the eager loop takes over. Returns whether compiled
    fills are possible.
    """
    global _compile_setting, _compiled_fill
    _compile_setting, _compiled_fill = enabled, None
    return enabled is not False and _compiler() is not None


def _compiler():
    global _compile_setting, _compiled_fill
    if _compiled_fill is None:
        try:
            _compiled_fill = torch.compile(_fill_fused, dynamic=True)
        except Exception:  # noqa: BLE001 - no compiler on this platform
            _compile_setting = False
    return _compiled_fill


def _compiled_fill_for(out: torch.Tensor):
    """The compiled fill to use for ``out``, or None for the eager loop."""
    if out.device.type != "cpu" or _compile_setting is False or (
            _compile_setting is None and out.numel() < COMPILE_MIN_ELEMENTS):
        return None
    return _compiler()
