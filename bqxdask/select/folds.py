"""Walk-forward folds with purge gaps, the test part, row sampling (SPEC §9). Pure.

In time order the rows with every target defined are laid out as::

    [initial][gap][fold 1][gap][fold 2] … [gap][fold K][gap][test]

- ``test`` is the last :data:`TEST_SHARE` of the rows, never used for a choice: only the
  model trained on every row before it (up to its gap) is scored there.
- Fold k evaluates on its block and trains on every row before it except the ``gap`` rows just
  before the block (the *purge*: a target at t reads bars up to t + h, so a training row closer
  than max(h) to the block would know the block's first bars). The gap after each block (the
  *embargo*) keeps one fold's evaluation targets off the next block, so the folds' scores are
  about separate stretches of time (López de Prado, *Advances in Financial Machine Learning*,
  ch. 7). Blocks 1..K and the initial block have equal sizes (the initial one takes the
  remainder).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: share of the rows held out as the test part (SPEC §9)
TEST_SHARE = 0.15
#: fewest rows an evaluation block or the test part may have
MIN_PART_ROWS = 100


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold; row ranges are ``[start, stop)`` positions of the dataset rows."""

    number: int  #: 1..K; 0 is the test part's model
    train: tuple[int, int]
    evaluate: tuple[int, int]


@dataclass(frozen=True)
class Layout:
    rows: int
    gap: int
    initial: tuple[int, int]
    folds: tuple[Fold, ...]
    test: Fold  #: trains on every row before the test part's gap

    def labels(self) -> np.ndarray:
        """Per row: ``initial``, ``purge``, ``fold<k>`` or ``test``."""
        out = np.full(self.rows, "purge", dtype=object)
        out[slice(*self.initial)] = "initial"
        for f in self.folds:
            out[slice(*f.evaluate)] = f"fold{f.number}"
        out[slice(*self.test.evaluate)] = "test"
        return out


def walk_forward(rows: int, folds: int, gap: int) -> Layout:
    """The layout of ``rows`` time-ordered rows (module docstring); ValueError when too few."""
    n_test = int(rows * TEST_SHARE)
    before = rows - n_test - gap  # rows the test model trains on
    block = (before - folds * gap) // (folds + 1)
    if block < MIN_PART_ROWS or n_test < MIN_PART_ROWS:
        raise ValueError(f"{rows} rows are too few for {folds} folds with gaps of {gap} rows")
    first = before - folds * (gap + block)
    out = []
    for k in range(1, folds + 1):
        start = first + (k - 1) * (gap + block) + gap
        out.append(Fold(k, (0, start - gap), (start, start + block)))
    return Layout(rows, gap, (0, first), tuple(out), Fold(0, (0, before), (rows - n_test, rows)))


def required_rows(folds: int, gap: int) -> int:
    """Fewest rows with targets for which :func:`walk_forward` succeeds."""
    n = int(((folds + 1) * MIN_PART_ROWS + (folds + 1) * gap) / (1 - TEST_SHARE))
    n = max(n - folds - 2, 0)
    while True:
        try:
            walk_forward(n, folds, gap)
            return n
        except ValueError:
            n += 1


def sample_rows(positions: np.ndarray, cap: int, seed: int, stream: int) -> np.ndarray:
    """At most ``cap`` of ``positions``, drawn reproducibly, kept in time order."""
    if len(positions) <= cap:
        return positions
    rng = np.random.default_rng((seed, stream))
    return np.sort(rng.choice(positions, size=cap, replace=False))
