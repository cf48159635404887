"""The tracker's Hungarian step on the pairs that can match, one connected component at a time.

Each round of :func:`worker.tracking.tracker.match` is a minimum-cost assignment of tracks to
detections on a cost that is finite only on *gated* pairs (IoU at least ``iou_min``, or centre
distance and size ratio within bounds) and ``NO_MATCH`` elsewhere. Solved as one dense ``(N, M)``
problem it was quadratic in memory and up to cubic in time: 3,000 faces a frame took 2-3 s,
10,000 (a crowd, or a hostile producer's results message) 52 s and 6.3 GB. Here:

* :func:`window_pairs` lists the pairs that can pass a gate without looking at the others: the
  caller gives each track a window (half-widths per axis) that holds every detection centre its
  gate could accept; detection centres are sorted into horizontal bands, and by x within a band,
  so a window costs a few binary searches plus its own candidates;
* :func:`assign` splits the gated pairs into the connected components of their bipartite graph and
  solves each alone with :func:`scipy.optimize.linear_sum_assignment` on its dense block
  (``NO_MATCH`` where no pair); a component of one pair (most of them) is taken without a call.

**The same answers.** The dense problem's minimum, with ``NO_MATCH`` above any sum of real costs
(``min(N, M) * max cost < NO_MATCH``: 1.5 * 10,000 here), takes as many gated pairs as can be
taken and, among those sets, the cheapest; a component's pairs never compete with another's, so
that optimum is the union of each component's own. Where it is unique (always, unless two
different sets of pairs cost exactly the same) the assignment is the same pair for pair. Exact
ties happen with boxes on a pixel grid (the Haar detector's, a rounding producer's) or
duplicated, and scipy breaks them by its scan order over the whole matrix, which a component
alone does not see; so a round of up to ``WHOLE_MAX_CELLS`` tracks x faces (500 x 500) is still
solved whole, as one dense block: the former matrix, bit for bit, and so the former answer, ties
included. Past that size a tie may go to the other answer of the same cost.
``tests/unit/test_track_scale.py`` holds the dense code as the oracle (:mod:`trainer.bench.crowd`).

**Bounds.** For faces spread over a frame the work is about linear in faces. A pile-up (thousands
of boxes on one spot: the gate then really does pass N x M pairs) is bounded by two budgets,
``max_pairs`` candidate pairs a round (past it, each window keeps the candidates nearest its
centre) and ``max_cells`` cells of dense blocks a round (past it, the components left, largest
last, are matched greedily, cheapest pair first). Every face still gets a track either way; the
caller is told the answer is approximate (``exact`` false) and logs it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

NO_MATCH = 1e6  # cost of a pair outside the gate
BIG = 1e300  # windows and points are clipped to +-BIG (order kept), so no arithmetic below makes inf - inf
ALL_PAIRS_MAX = 4096  # up to this many pairs, window_pairs lists them all (fewer calls than the search)
WHOLE_MAX_CELLS = 250_000  # a problem up to this many cells (500 x 500) is solved whole, the former way, ties and all
WIDEN = 1e-6  # a window is widened by this share of its reach and of its centre's magnitude: rounding drops no pair
_EMPTY = np.zeros(0, np.int64)


def _ragged_arange(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``concat(arange(s, s + c) for s, c in zip(start, count))`` without a Python loop."""
    total = int(count.sum())
    offsets = np.repeat(np.cumsum(count) - count, count)
    return np.repeat(start, count) + (np.arange(total) - offsets)


@np.errstate(over="ignore")  # a reach or band near the largest float becomes inf: unbounded, as meant
def window_pairs(centre_p: np.ndarray, reach_p: np.ndarray, centre_d: np.ndarray,
                 max_pairs: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Index pairs ``(i, j)`` whose point ``centre_d[j]`` lies in window ``i``:
    ``|centre_d[j] - centre_p[i]| <= reach_p[i]`` on both axes (``(N, 2)``, ``(N, 2)``, ``(M, 2)``;
    a window or point that is not finite has no pair; a reach of NaN or inf is unbounded).
    Returns ``(rows, cols, complete)``: every such pair (and some just outside, see ``WIDEN``) and
    True while they number at most ``max_pairs``; past it, False and about ``max_pairs`` of them
    (each window cut to its bands nearest its centre in y, and to the points nearest it in x)."""
    p = np.flatnonzero(np.isfinite(centre_p).all(1))
    d = np.flatnonzero(np.isfinite(centre_d).all(1))
    if p.size == 0 or d.size == 0:
        return _EMPTY, _EMPTY, True
    if p.size * d.size <= ALL_PAIRS_MAX:  # a few faces: every pair costs less than finding the few
        return np.repeat(p, d.size), np.tile(d, p.size), True
    cp, cd = np.clip(centre_p[p], -BIG, BIG), np.clip(centre_d[d], -BIG, BIG)
    reach = np.where(np.isnan(reach_p[p]), np.inf, reach_p[p])
    reach = np.clip(reach + WIDEN * (reach + np.abs(cp) + 1.0), 0.0, None)
    lo, hi = np.clip(cp - reach, -BIG, BIG), np.clip(cp + reach, -BIG, BIG)  # (n, 2)

    # horizontal bands as tall as the median window: a window spans one or two
    y0 = min(float(lo[:, 1].min()), float(cd[:, 1].min()))
    height = float(np.median(hi[:, 1] - lo[:, 1]))
    height = height if height > 0 else 1.0

    def band(y: np.ndarray) -> np.ndarray:  # monotone in y: a point inside a window is in one of its bands
        return np.floor(np.minimum((y - y0) / height, 2.0 ** 52)).astype(np.int64)

    point_band = band(cd[:, 1])
    occupied = np.unique(point_band)  # (B,) sorted
    b_lo = np.searchsorted(occupied, band(lo[:, 1]), "left")  # window i spans occupied[b_lo:b_hi]
    b_hi = np.searchsorted(occupied, band(hi[:, 1]), "right")
    complete = True
    if int((b_hi - b_lo).sum()) > max_pairs:  # windows far taller than most: keep the bands nearest the centre
        complete = False
        keep = max(1, max_pairs // len(p))
        b_c = np.searchsorted(occupied, band(cp[:, 1]), "left")
        b_lo = np.clip(b_c - keep // 2, b_lo, np.maximum(b_hi - keep, b_lo))
        b_hi = np.minimum(b_hi, b_lo + keep)

    # points sorted by (band, x rank): the points of band k with x in [x_lo, x_hi] are one slice
    xs = np.sort(cd[:, 0])
    stride = len(d) + 1  # x ranks run 0..len(d): one band's keys never reach the next band's
    key = np.searchsorted(occupied, point_band) * stride + np.searchsorted(xs, cd[:, 0], "left")
    order = np.argsort(key, kind="stable")
    key = key[order]
    n_bands = b_hi - b_lo
    w = np.repeat(np.arange(len(p)), n_bands)  # (window, band) pairs
    k = _ragged_arange(b_lo, n_bands)
    # rank(x) >= searchsorted(xs, x_lo, left) <=> x >= x_lo; rank(x) < searchsorted(xs, x_hi, right) <=> x <= x_hi
    start = np.searchsorted(key, k * stride + np.searchsorted(xs, lo[w, 0], "left"), "left")
    stop = np.searchsorted(key, k * stride + np.searchsorted(xs, hi[w, 0], "right"), "left")
    if int((stop - start).sum()) > max_pairs:  # a pile-up: each (window, band) keeps the points nearest its centre
        complete = False
        keep = max(1, max_pairs // max(len(w), 1))
        centre = np.searchsorted(key, k * stride + np.searchsorted(xs, cp[w, 0], "left"), "left")
        start = np.clip(centre - keep // 2, start, np.maximum(stop - keep, start))
        stop = np.minimum(stop, start + keep)
    count = stop - start
    rows = np.repeat(w, count)
    cols = order[_ragged_arange(start, count)]
    inside = (cd[cols, 1] >= lo[rows, 1]) & (cd[cols, 1] <= hi[rows, 1])  # a band holds more than the window's rows
    return p[rows[inside]], d[cols[inside]], complete


def assign(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, all_rows: np.ndarray, all_cols: np.ndarray,
           max_cells: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Minimum-cost assignment of ``all_rows`` (ascending ids) to ``all_cols`` on the pairs
    ``(rows[k], cols[k])`` at ``cost[k] < NO_MATCH`` (each pair at most once; any pair not listed
    is no pair): the most pairs, then the cheapest. Returns the pairs taken ``(rows, cols)`` by row,
    and whether all of it was solved exactly (false: past ``max_cells`` cells of dense blocks, the
    components left were matched greedily). A problem of at most ``WHOLE_MAX_CELLS`` cells (and
    ``max_cells``) is solved as one dense block: the former problem, so the former answer even where
    two answers cost exactly the same."""
    if rows.size == 0:
        return _EMPTY, _EMPTY, True
    if len(all_rows) * len(all_cols) <= min(WHOLE_MAX_CELLS, max_cells):
        r, c = _solve_block(np.searchsorted(all_rows, rows), np.searchsorted(all_cols, cols), cost,
                            len(all_rows), len(all_cols))
        return all_rows[r], all_cols[c], True
    track_ids, ri = np.unique(rows, return_inverse=True)  # ascending: a block keeps the dense order
    det_ids, ci = np.unique(cols, return_inverse=True)
    nr, nc = len(track_ids), len(det_ids)
    if nr == nc == len(rows):  # no row or column in two pairs: every pair is a component of its own
        by_row = np.argsort(rows, kind="stable")
        return rows[by_row], cols[by_row], True
    graph = coo_matrix((np.ones(len(ri), np.int8), (ri, nr + ci)), shape=(nr + nc, nr + nc))
    _, label = connected_components(graph, directed=False)
    comp = label[ri]  # (K,) the component of each pair
    n_comp = int(label.max()) + 1  # each has a row and a column
    cells = np.bincount(label[:nr], minlength=n_comp) * np.bincount(label[nr:], minlength=n_comp)  # its rows x cols
    lone = cells[comp] == 1  # a component of one pair: it is taken
    taken_r, taken_c = [ri[lone]], [ci[lone]]
    rest = np.flatnonzero(~lone)
    rest = rest[np.lexsort((comp[rest], cells[comp[rest]]))]  # by component, smallest first
    bounds = np.flatnonzero(np.diff(comp[rest])) + 1
    budget, exact = max_cells, True
    for e in np.split(rest, bounds) if rest.size else ():
        r_ids, r_at = np.unique(ri[e], return_inverse=True)
        c_ids, c_at = np.unique(ci[e], return_inverse=True)
        if len(r_ids) * len(c_ids) <= budget:
            budget -= len(r_ids) * len(c_ids)
            r, c = _solve_block(r_at, c_at, cost[e], len(r_ids), len(c_ids))
            r, c = r_ids[r], c_ids[c]
        else:
            exact = False
            r, c = _greedy(ri[e], ci[e], cost[e])
        taken_r.append(r)
        taken_c.append(c)
    r, c = np.concatenate(taken_r), np.concatenate(taken_c)
    by_row = np.argsort(r, kind="stable")
    return track_ids[r[by_row]], det_ids[c[by_row]], exact


def _solve_block(r_at: np.ndarray, c_at: np.ndarray, cost: np.ndarray, n_rows: int,
                 n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """One dense ``(n_rows, n_cols)`` problem, ``NO_MATCH`` but at the pairs: the pairs taken, by row."""
    block = np.full((n_rows, n_cols), NO_MATCH)
    block[r_at, c_at] = cost
    a, b = linear_sum_assignment(block)
    real = block[a, b] < NO_MATCH
    return a[real], b[real]


def _greedy(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs taken cheapest first (ties: lower row, then lower column), each row and column once."""
    used_r, used_c = set(), set()
    out_r, out_c = [], []
    for k in np.lexsort((cols, rows, cost)).tolist():
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            out_r.append(r)
            out_c.append(c)
    return np.array(out_r, np.int64), np.array(out_c, np.int64)
