"""An LRU cache of KV states keyed by token ids, with longest-prefix lookup.

Entries hold the per-layer keys and values of one sequence. Lookup walks a
token trie: any cached sequence that shares the first k tokens with the query
serves those k positions (a prompt shares its system preamble with another
prompt; an extended candidate shares everything but its new step). Eviction
is least-recently-used under a byte budget.

Each trie node remembers which owners (a run's items) inserted a sequence
through it, so `own_length` tells how much of a query the owner's own earlier
work would have left in the cache: what it would find running alone. The
backend computes with every hit and charges each item as if alone.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [1, H, T, hd]


@dataclass(slots=True)
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    ref: int | None = None  # id of a live entry whose key passes through this node
    # who inserted a key through this node: None, one owner, or a set of two or more (most nodes have
    # one owner, along an item's own continuation, and an empty set alone is 216 bytes)
    owners: object = None

    def add(self, owners: frozenset[object]) -> None:
        for o in owners:
            if self.owners is None:
                self.owners = o
            elif isinstance(self.owners, set):
                self.owners.add(o)
            elif self.owners != o:
                self.owners = {self.owners, o}

    def owned_by(self, owner: object) -> bool:
        return owner in self.owners if isinstance(self.owners, set) else self.owners == owner


@dataclass
class _Entry:
    key: tuple[int, ...]
    kv: KV
    nbytes: int
    logits: torch.Tensor | None = (
        None  # [V] at the last position: a full hit needs no prefill at all
    )


@dataclass
class Hit:
    """A lookup result: `length` leading positions are served by `kv`; `logits` is set when the
    whole query was cached together with its next-token logits."""

    length: int = 0
    kv: KV | None = None
    logits: torch.Tensor | None = None


class PrefixCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._by_key: dict[tuple[int, ...], int] = {}
        self._root = _Node()
        self._next_id = 0
        self.hits = 0
        self.hit_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self.__init__(self.max_bytes)

    def lookup(self, ids: tuple[int, ...]) -> Hit:
        """The longest cached prefix of `ids`, with KV covering at least that many positions."""
        node, best_len, best_ref = self._root, 0, None
        for depth, tok in enumerate(ids, start=1):
            node = node.children.get(tok)
            if node is None:
                break
            if node.ref is not None and node.ref in self._entries:
                best_len, best_ref = depth, node.ref
        if best_ref is None:
            return Hit()
        self._entries.move_to_end(best_ref)
        self.hits += 1
        self.hit_tokens += best_len
        entry = self._entries[best_ref]
        exact = best_len == len(ids) and len(entry.key) == len(ids)
        return Hit(best_len, entry.kv, entry.logits if exact else None)

    def own_length(self, ids: tuple[int, ...], owner: object) -> int:
        """How many leading positions of `ids` a live entry covers on a path `owner` inserted through
        (at most `lookup(ids).length`); with owner None, every owner's entries count."""
        return self._own(ids, owner)[0]

    def _own(self, ids: tuple[int, ...], owner: object) -> tuple[int, _Node | None]:
        """`own_length`, and the node it ended on when that is all of `ids`."""
        node, best = self._root, 0
        for depth, tok in enumerate(ids, start=1):
            node = node.children.get(tok)
            if node is None or (owner is not None and not node.owned_by(owner)):
                return best, None
            if node.ref is not None and node.ref in self._entries:
                best = depth
        return best, node

    def own_hit(self, ids: tuple[int, ...], owner: object) -> int:
        """The positions of `ids` a prefill would take from `owner`'s own entries: all of them when an
        exact entry holds the next-token logits, else at most len(ids) - 1 (the last position is
        recomputed for its logits), as `Context.from_hit` reads a hit."""
        n, node = self._own(ids, owner)
        if n < len(ids) or node is None:
            return n
        # the entry `lookup` serves the whole of `ids` from: its last node's, which may be a longer key passing
        # through (then no logits, and the last position is computed again). Reading the exact key's entry here
        # charged an item less than was computed (QA pass: lookahead's ledger showed -3 prompt tokens shared)
        entry = self._entries.get(node.ref) if node.ref is not None else None
        exact = entry is not None and len(entry.key) == len(ids) and entry.logits is not None
        return n if exact else n - 1

    def insert(self, ids: tuple[int, ...], kv: KV, logits: torch.Tensor | None = None,
               owners: frozenset[object] = frozenset()) -> None:
        if not ids or self.max_bytes <= 0:
            return
        old = self._by_key.get(ids)
        if old is not None:
            self._entries.move_to_end(old)
            if logits is not None and self._entries[old].logits is None:
                self._entries[old].logits = logits
            if owners:
                self._tag(ids, owners)
            return
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if logits is not None:
            nbytes += logits.numel() * logits.element_size()
        if nbytes > self.max_bytes:
            return
        eid = self._next_id
        self._next_id += 1
        self._entries[eid] = _Entry(ids, kv, nbytes, logits)
        self._by_key[ids] = eid
        self.nbytes += nbytes
        node = self._root
        for tok in ids:
            node = node.children.setdefault(tok, _Node())
            node.ref = eid
            node.add(owners)
        while self.nbytes > self.max_bytes:
            self._evict(next(iter(self._entries)))

    def _tag(self, ids: tuple[int, ...], owners: frozenset[object]) -> None:
        node: _Node | None = self._root
        for tok in ids:
            node = node.children.get(tok) if node is not None else None
            if node is None:
                return
            node.add(owners)

    def _evict(self, eid: int) -> None:
        entry = self._entries.pop(eid)
        del self._by_key[entry.key]
        self.nbytes -= entry.nbytes
        path = [self._root]
        for tok in entry.key:
            nxt = path[-1].children.get(tok)
            if nxt is None:
                break
            path.append(nxt)
        for depth in range(len(path) - 1, 0, -1):  # prune dead leaves bottom-up
            node = path[depth]
            if node.ref == eid:
                node.ref = None
            if not node.children and (node.ref is None or node.ref not in self._entries):
                del path[depth - 1].children[entry.key[depth - 1]]
