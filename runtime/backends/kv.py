"""A KV cache that writes in place instead of concatenating every step.

transformers' DynamicLayer grows by `torch.cat`, which copies the whole cache
on every decode step (O(T^2) traffic). gpt-fast preallocates; this layer does
the same inside a regular DynamicCache: each layer holds a buffer sized for
the whole job (grown by doubling if a caller overruns it) and exposes views of
the filled part as `keys` / `values`, so everything else in transformers
(masks, batch selection) keeps working.
"""

from __future__ import annotations

import torch

try:
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ImportError:  # transformers 4.x: no per-layer classes; fall back to the stock cache
    from transformers import DynamicCache

    DynamicLayer = None


if DynamicLayer is not None:

    class BufferLayer(DynamicLayer):
        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity
            self.length = 0
            self._k: torch.Tensor | None = None
            self._v: torch.Tensor | None = None

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.device = key_states.device
            b, h, _, d = key_states.shape
            self._k = key_states.new_empty((b, h, self.capacity, d))
            self._v = value_states.new_empty((b, h, self.capacity, value_states.shape[-1]))
            self.is_initialized = True

        def _grow(self, need: int) -> None:
            cap = max(need, 2 * self._k.shape[-2])
            for name in ("_k", "_v"):
                old = getattr(self, name)
                new = old.new_empty((*old.shape[:2], cap, old.shape[-1]))
                new[:, :, : self.length] = old[:, :, : self.length]
                setattr(self, name, new)

        def _views(self) -> None:
            self.keys = self._k[:, :, : self.length]
            self.values = self._v[:, :, : self.length]

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self._k.shape[-2]:
                self._grow(end)
            self._k[:, :, self.length : end] = key_states
            self._v[:, :, self.length : end] = value_states
            self.length = end
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if not self.is_initialized:
                return
            for name in ("_k", "_v"):
                old = getattr(self, name)
                new = old.new_empty((len(indices), *old.shape[1:]))
                torch.index_select(
                    old[:, :, : self.length], 0, indices, out=new[:, :, : self.length]
                )
                setattr(self, name, new)
            self._views()

        def batch_repeat_interleave(self, repeats: int) -> None:
            idx = torch.arange(self._k.shape[0], device=self._k.device).repeat_interleave(repeats)
            self.batch_select_indices(idx)

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove < 0 and self.is_initialized:
                self.length = max(0, self.length + tokens_to_remove)
                self._views()


def new_cache(n_layer: int, capacity: int):
    """A DynamicCache whose layers write into buffers of `capacity` positions."""
    cache = DynamicCache()
    if DynamicLayer is not None and hasattr(cache, "layers"):
        cache.layers = [BufferLayer(capacity) for _ in range(n_layer)]
        cache.layer_class_to_replicate = None
    return cache
