"""Choose which cells of a count table to hide so that no small count can be worked out.

`protect(grid, min_cell)` takes one metric's table with its totals (last row and last column) and
returns the cells to suppress. Hidden cells are never told apart in a report, whether small or
hidden to protect a small one.

1. Primary: every cell, total included, whose count is between 1 and min_cell - 1 is suppressed.
   Zero is published: it says nothing about any one patron.
2. Complementary: take the table with its totals as a graph — one node per row (the total row too),
   one per column (the total column too), and one edge per suppressed cell between its row and its
   column. Each row and each column is one equation (cells = total), so the published numbers fix
   the sum of the suppressed cells at every node. A suppressed value can be worked out exactly, by
   subtraction or by any linear combination of rows and columns, if and only if its edge is a
   bridge of that graph (lies on no cycle): a cycle's edges can be shifted by +t/-t alternately
   without changing any row or column sum. So while the graph has a bridge (row, col), we suppress
   the cheapest path from row to col that avoids the bridge — Dijkstra over all cells, where an
   already suppressed cell costs 0, a published cell costs its value (hide as little as possible)
   and a zero costs a great deal (a zero on a cycle would bound its neighbours: with a suppressed
   1 opposite, the pair could be pinned). The rule "a row or column never has exactly one
   suppressed cell" is the special case of a node with one edge; it alone is not enough (two
   suppressed rectangles joined by one shared row and column still leak the joining cell).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Sequence

_ZERO_COST = 10**15  # hide a zero only when nothing else closes the cycle


def protect(grid: Sequence[Sequence[int]], min_cell: int) -> set[tuple[int, int]]:
    """Which cells of `grid` to suppress; its last row and last column are the totals."""
    n_rows, n_cols = len(grid), len(grid[0])
    hidden = {(i, j) for i in range(n_rows) for j in range(n_cols) if 0 < grid[i][j] < min_cell}
    while bridges := _bridges(hidden, n_rows, n_cols):
        for edge in bridges:
            if _is_bridge(edge, hidden):
                hidden |= _cheapest_cycle(edge, hidden, grid)
    return hidden


def _adjacency(hidden: Iterable[tuple[int, int]]) -> dict[tuple[str, int], list[tuple[str, int]]]:
    adj: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for i, j in hidden:
        adj[("r", i)].append(("c", j))
        adj[("c", j)].append(("r", i))
    return adj


def _bridges(hidden: set[tuple[int, int]], n_rows: int, n_cols: int) -> list[tuple[int, int]]:
    """Tarjan's bridge search, iterative (tables can be larger than the recursion limit)."""
    adj = _adjacency(sorted(hidden))
    order: dict[tuple[str, int], int] = {}
    low: dict[tuple[str, int], int] = {}
    found: list[tuple[int, int]] = []
    for root in sorted(adj):
        if root in order:
            continue
        order[root] = low[root] = len(order)
        stack = [(root, (("", -1)), iter(adj[root]))]
        while stack:
            node, parent, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                if stack:
                    up = stack[-1][0]
                    low[up] = min(low[up], low[node])
                    if low[node] > order[up]:
                        r, c = (up, node) if up[0] == "r" else (node, up)
                        found.append((r[1], c[1]))
                continue
            if child == parent:  # a simple graph: one edge per (row, column) pair
                continue
            if child in order:
                low[node] = min(low[node], order[child])
            else:
                order[child] = low[child] = len(order)
                stack.append((child, node, iter(adj[child])))
    return sorted(found)


def _is_bridge(edge: tuple[int, int], hidden: set[tuple[int, int]]) -> bool:
    """Is `edge` still on no cycle (an earlier repair in the same pass may have fixed it)?"""
    adj = _adjacency(hidden - {edge})
    start, goal = ("r", edge[0]), ("c", edge[1])
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return False
        for nxt in adj.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return True


def _cheapest_cycle(
    edge: tuple[int, int], hidden: set[tuple[int, int]], grid: Sequence[Sequence[int]]
) -> set[tuple[int, int]]:
    """Cells of the cheapest row→column path avoiding `edge`; with it they make a cycle."""

    def cost(i: int, j: int) -> int:
        if (i, j) in hidden:
            return 0
        return grid[i][j] if grid[i][j] > 0 else _ZERO_COST

    n_rows, n_cols = len(grid), len(grid[0])
    start, goal = ("r", edge[0]), ("c", edge[1])
    best: dict[tuple[str, int], int] = {start: 0}
    back: dict[tuple[str, int], tuple[str, int]] = {}
    heap = [(0, start)]
    while heap:
        d, node = heapq.heappop(heap)
        if node == goal:
            break
        if d > best[node]:
            continue
        side, k = node
        others = (
            [("c", j) for j in range(n_cols)] if side == "r" else [("r", i) for i in range(n_rows)]
        )
        for nxt in others:
            i, j = (k, nxt[1]) if side == "r" else (nxt[1], k)
            if (i, j) == edge:
                continue
            nd = d + cost(i, j)
            if nd < best.get(nxt, nd + 1):
                best[nxt], back[nxt] = nd, node
                heapq.heappush(heap, (nd, nxt))
    path: set[tuple[int, int]] = set()
    node = goal
    while node != start:
        prev = back[node]
        path.add((prev[1], node[1]) if prev[0] == "r" else (node[1], prev[1]))
        node = prev
    return path
