"""A KV cache with room reserved for the tokens still to be decoded.

Why: ``transformers``' ``DynamicLayer`` appends each decoded token with ``torch.cat``, which copies
the layer's whole K/V every step. Batched evaluation decodes many long rows at once (27 ITL
episodes of ~1,000 tokens: 1.2 GB of K/V for SmolLM2-135M), so on a 15 GB/s CPU that copy alone
costs ~0.16 s per decode step — as much as the model's matmuls. The decode loop knows how many
tokens it may still produce (``max_new_tokens``), so it can reserve that room once after the
prefill and write each new token into it in place.

What: :func:`reserve` swaps every plain full-attention layer of a ``DynamicCache`` for a
:class:`ReservedLayer` holding the same K/V in a larger buffer; ``keys`` / ``values`` are views
of the filled part, so attention, masking and per-row capture read exactly what they read before.
Not covered: sliding-window and other layer kinds stay as they are (they hold other state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers.cache_utils import DynamicLayer

if TYPE_CHECKING:
    import torch

__all__ = ["ReservedLayer", "reserve"]


class ReservedLayer(DynamicLayer):
    """A full-attention cache layer whose K/V live in a buffer with spare columns.

    ``update`` writes new tokens into the spare columns (growing the buffer by doubling only if a
    caller feeds more than was reserved); ``keys`` / ``values`` are views of the filled columns.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, extra: int) -> None:
        super().__init__()
        self.device = keys.device
        self._length = keys.shape[-2]
        self._k = self._buffer(keys, self._length + max(0, extra))
        self._v = self._buffer(values, self._length + max(0, extra))
        self.is_initialized = True
        self._refresh()

    @staticmethod
    def _buffer(filled: torch.Tensor, capacity: int) -> torch.Tensor:
        b, h, t, d = filled.shape
        buf = filled.new_empty((b, h, capacity, d))
        buf[:, :, :t] = filled
        return buf

    def _refresh(self) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self._k[:, :, : self._length], self._v[:, :, : self._length]
        self.keys, self.values = keys, values
        return keys, values

    @property
    def capacity(self) -> int:
        return int(self._k.shape[-2])

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[-2]
        end = self._length + n
        if end > self.capacity:  # more than was reserved: grow once, amortised
            keys, values = self._refresh()
            self._k = self._buffer(keys, max(end, 2 * self.capacity))
            self._v = self._buffer(values, max(end, 2 * self.capacity))
        self._k[:, :, self._length : end] = key_states
        self._v[:, :, self._length : end] = value_states
        self._length = end
        return self._refresh()

    def get_seq_length(self) -> int:
        return self._length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, got {tokens_to_remove}")
        self._length = max(0, self._length + tokens_to_remove)
        self._refresh()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._refresh()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._k = self._k.repeat_interleave(repeats, dim=0)
        self._v = self._v.repeat_interleave(repeats, dim=0)
        self._refresh()

    def reset(self) -> None:
        self._length = 0
        self._refresh()


def reserve(cache: Any, extra: int) -> int:
    """Give each filled plain ``DynamicLayer`` of ``cache`` room for ``extra`` more tokens, in
    place; returns how many layers were swapped (0 for caches of other kinds)."""
    layers = getattr(cache, "layers", None)
    if not layers or extra <= 0:
        return 0
    swapped = 0
    for i, layer in enumerate(layers):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if type(layer) is DynamicLayer and keys is not None and values is not None and keys.dim() == 4:
            layers[i] = ReservedLayer(keys, values, extra)
            swapped += 1
    return swapped
