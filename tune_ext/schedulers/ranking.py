"""A sorted multiset of floats (never NaN: schedulers map non-finite metrics to -inf) with O(log n) insert, remove and rank (the rung's record).

Values live in sorted blocks of at most ``2 * LOAD`` items; a Fenwick tree over the block lengths
turns "how many recorded values beat x" into a block search plus a prefix sum, so a scheduler
decision never scans the rung (Ray's ASHA takes a percentile over every recorded value).

Example::

    >>> r = RankedValues()
    >>> [r.insert(x) for x in (0.5, 0.9, 0.1)]   # each: how many recorded before it are greater
    [0, 0, 2]
    >>> r.count_above(0.4), len(r)
    (2, 3)
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right


class RankedValues:
    LOAD = 256

    __slots__ = ("_blocks", "_maxes", "_tree", "_len")

    def __init__(self):
        self._blocks: list[list[float]] = []
        self._maxes: list[float] = []
        self._tree: list[int] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        """The recorded values in ascending order."""
        for block in self._blocks:
            yield from block

    def _rebuild(self) -> None:
        tree = [0] + [len(b) for b in self._blocks]
        for i in range(1, len(tree)):
            j = i + (i & -i)
            if j < len(tree):
                tree[j] += tree[i]
        self._tree = tree

    def _bump(self, block: int, delta: int) -> None:
        tree, i = self._tree, block + 1
        n = len(tree)
        while i < n:
            tree[i] += delta
            i += i & -i

    def _before(self, block: int) -> int:
        """Number of values in blocks [0, block)."""
        tree, i, total = self._tree, block, 0
        while i:
            total += tree[i]
            i -= i & -i
        return total

    def insert(self, x: float) -> int:
        """Add x; return how many values recorded before it are strictly greater (one block
        search serves both: a decision ranks and records a result in one step)."""
        maxes = self._maxes
        if not maxes:
            self._blocks.append([x])
            maxes.append(x)
            self._len = 1
            self._rebuild()
            return 0
        i = bisect_left(maxes, x)
        if i == len(maxes):            # above every value: append to the last block
            i -= 1
            block = self._blocks[i]
            block.append(x)
            maxes[i] = x
            above = 0
        else:
            block = self._blocks[i]
            j = bisect_right(block, x)
            if maxes[i] == x:   # values equal to x may continue in later blocks
                above = self.count_above(x)
            else:               # len - (values in blocks before i) - j; the prefix sum inlined
                above, tree, k = self._len - j, self._tree, i
                while k:
                    above -= tree[k]
                    k -= k & -k
            block.insert(j, x)
        self._len += 1
        if len(block) > 2 * self.LOAD:
            self._blocks[i:i + 1] = [block[:self.LOAD], block[self.LOAD:]]
            maxes[i:i + 1] = [block[self.LOAD - 1], block[-1]]
            self._rebuild()
        else:                   # self._bump(i, 1), inlined
            tree, k = self._tree, i + 1
            n = len(tree)
            while k < n:
                tree[k] += 1
                k += k & -k
        return above

    def remove(self, x: float) -> None:
        """Remove one occurrence of x; ValueError if absent."""
        i = bisect_left(self._maxes, x)
        block = self._blocks[i] if i < len(self._blocks) else []
        j = bisect_left(block, x)
        if j == len(block) or block[j] != x:
            raise ValueError(f"{x!r} is not recorded")
        del block[j]
        self._len -= 1
        if block:
            self._maxes[i] = block[-1]
            self._bump(i, -1)
        else:
            del self._blocks[i], self._maxes[i]
            self._rebuild()

    def count_above(self, x: float) -> int:
        """How many recorded values are strictly greater than x."""
        i = bisect_right(self._maxes, x)
        if i == len(self._maxes):
            return 0
        return self._len - self._before(i) - bisect_right(self._blocks[i], x)
