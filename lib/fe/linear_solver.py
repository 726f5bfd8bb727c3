"""Direct sparse solver for symmetric positive definite FE systems that reuses its analysis.

Every sample of a pixel-grid study has the same sparsity pattern, so MKL PARDISO's symbolic
analysis (fill-reducing ordering) is done once and only the numerical factorization is
repeated per sample; all load cases of a sample are then solved from one factorization.
Built on ``pypardiso`` (pinned), whose phase-level call is used directly.
"""
from __future__ import annotations

import numpy as np
import pypardiso
import scipy.sparse as sp

_PHASE_ANALYSIS = 11
_PHASE_FACTORIZE = 22
_PHASE_SOLVE = 33
_MTYPE_SPD = 2  # real symmetric positive definite


class SPDSolver:
    """PARDISO for one sparsity pattern: ``factorize(K)`` then ``solve(b)`` any number of times.

    ``K`` is a full (both triangles) symmetric positive definite CSR matrix; only its upper
    triangle is passed to PARDISO. The symbolic analysis is redone only when the pattern changes.
    """

    def __init__(self) -> None:
        self._pardiso = pypardiso.PyPardisoSolver(mtype=_MTYPE_SPD)
        self._pattern: tuple[np.ndarray, np.ndarray] | None = None
        self._upper: sp.csr_matrix | None = None
        self.n_analyses = 0

    def factorize(self, matrix: sp.spmatrix, reanalyse: bool = False) -> None:
        """Numerically factorize ``matrix`` (n, n), reusing the analysis of an equal pattern
        unless ``reanalyse`` (used by the benchmark to time the full from-scratch cost)."""
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got shape {matrix.shape}")
        upper = sp.triu(matrix, format="csr")
        upper.sort_indices()
        if not np.all(np.isfinite(upper.data)):
            raise ValueError("matrix has NaN or infinite entries")
        same = (
            not reanalyse
            and self._pattern is not None
            and self._pattern[0].shape == upper.indptr.shape
            and self._pattern[1].shape == upper.indices.shape
            and np.array_equal(self._pattern[0], upper.indptr)
            and np.array_equal(self._pattern[1], upper.indices)
        )
        rhs = np.zeros((upper.shape[0], 1), order="F")
        if not same:
            self._pardiso.set_phase(_PHASE_ANALYSIS)
            self._pardiso._call_pardiso(upper, rhs)
            self._pattern = (upper.indptr.copy(), upper.indices.copy())
            self.n_analyses += 1
        self._pardiso.set_phase(_PHASE_FACTORIZE)
        self._pardiso._call_pardiso(upper, rhs)
        self._upper = upper

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Solve with the last factorization; ``rhs`` is (n,) or (n, k), result has its shape."""
        if self._upper is None:
            raise RuntimeError("call factorize() before solve()")
        b = np.asfortranarray(rhs, dtype=np.float64)
        if b.shape[0] != self._upper.shape[0]:
            raise ValueError(f"rhs has {b.shape[0]} rows, the matrix {self._upper.shape[0]}")
        self._pardiso.set_phase(_PHASE_SOLVE)
        return self._pardiso._call_pardiso(self._upper, b)

    def __del__(self) -> None:  # release PARDISO's internal memory
        try:
            self._pardiso.free_memory(everything=True)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
