"""Choose which cells of a count table to hide so that no small count can be worked out.

`protect(grid, min_cell)` takes one metric's table (vendors by periods) with its totals (the last
row is all vendors, the last column each vendor's total over the periods) and returns the cells to
suppress. Hidden cells are never told apart in a report, whether small or hidden to protect a
small one.

Each period is protected on its own, so what a report shows for a period depends only on that
period's counts, never on which other periods the report covers: staff who report January in
February and January again (with February) in March publish January's cells identically, and
nothing is gained by subtracting one report from the other.

1. Primary: every period cell, the period's all-vendors total included, whose count is between 1
   and min_cell - 1 is suppressed, and every non-zero one the caller names (`also`: made by fewer
   than min_cell people, however large the count). Zero is published: it says nothing about any
   one patron.
2. Complementary, per period (`protect_line`): a period's column is one equation (its vendor cells
   add up to its all-vendors total), so a lone hidden entry in it could be worked out by
   subtraction. When exactly one is hidden, the smallest published non-zero entry of the column is
   hidden too (on a tie the first, vendors being in id order, so the choice is the same in every
   report). With two or more hidden entries the column alone pins none of them. A zero is never
   hidden as a complement: a zero on a cycle would bound its neighbours (with a suppressed 1
   opposite, the pair is pinned).
3. Totals across periods: a vendor's total (and the grand total) is shown only when every period
   cell it adds up is shown, so a shown one is the sum of published numbers and adds no equation,
   in this report or combined with any other report over other periods. (A small total is hidden
   by this rule too: some period under it is small.)

Why no hidden cell can be worked out from the table (by subtraction or any linear combination of
rows and columns): take the table as a graph with a node per row and per column and an edge per
hidden cell; a hidden value is determined exactly if and only if its edge is a bridge (lies on no
cycle). A hidden cell (v, p) has a second hidden cell (v', p) in its column (rule 2), and both
rows' totals are hidden (rule 3), so the cycle p, v, total, v', p runs through it and through
both totals; every hidden total has such a hidden period cell in its row.
"""

from __future__ import annotations

from collections.abc import Sequence, Set


def protect(
    grid: Sequence[Sequence[int]], min_cell: int, also: Set[tuple[int, int]] = frozenset()
) -> set[tuple[int, int]]:
    """Which cells of `grid` to suppress; its last row and last column are the totals. `also`:
    period cells to suppress whatever their count (made by too few people), protected like small
    ones."""
    n_rows, n_cols = len(grid), len(grid[0])
    hidden: set[tuple[int, int]] = set()
    for j in range(n_cols - 1):
        column = [grid[i][j] for i in range(n_rows)]
        primary = {i for i in range(n_rows) if (i, j) in also}
        hidden |= {(i, j) for i in protect_line(column, min_cell, primary)}
    rows_with_hidden = {i for i, _ in hidden}
    return hidden | {(i, n_cols - 1) for i in rows_with_hidden}


def protect_line(line: Sequence[int], min_cell: int, also: Set[int] = frozenset()) -> set[int]:
    """Which entries of one period's column to suppress; its last entry is the column's total.
    `also`: non-zero entries to suppress whatever their count.

    Depends on nothing but the column's counts, `also` and their order (callers keep one order,
    e.g. vendors sorted by id): zeros anywhere in it change nothing.
    """
    hidden = {k for k, value in enumerate(line) if 0 < value < min_cell or (value and k in also)}
    if len(hidden) == 1:
        # The lone hidden entry is a vendor cell and the total is shown (a small total has a small
        # cell under it, and a total named in `also` has every non-zero cell under it named too:
        # its people are theirs), so there is always a published non-zero entry to hide with it.
        shown = [k for k, value in enumerate(line) if value > 0 and k not in hidden]
        hidden.add(min(shown, key=lambda k: (line[k], k)))
    return hidden
