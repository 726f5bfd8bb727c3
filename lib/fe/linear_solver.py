"""Direct sparse solver for FE systems (MKL PARDISO) that reuses its symbolic analysis.

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
# real SPD; real nonsymmetric (full pivoting); real structurally symmetric (nonsymmetric values on a
# symmetric pattern, diagonal pivoting with perturbation); real symmetric indefinite (Bunch–Kaufman)
_MTYPES = {"spd": 2, "nonsymmetric": 11, "structurally_symmetric": 1, "symmetric_indefinite": -2}
_UPPER = ("spd", "symmetric_indefinite")  # kinds that pass only the upper triangle
_NEWTON_KINDS = ("structurally_symmetric",)  # used inside Newton loops: no iterative refinement


class PardisoSolver:
    """PARDISO for one sparsity pattern: ``factorize(K)`` then ``solve(b)`` any number of times.

    ``K`` is a full (both triangles) CSR matrix. ``kind="spd"`` (symmetric positive definite,
    e.g. linear elasticity) and ``kind="symmetric_indefinite"`` (whose :meth:`inertia` counts
    the negative eigenvalues) pass only its upper triangle; ``kind="nonsymmetric"`` (e.g. the
    consistent tangent of a non-associative or coupled plasticity model) and
    ``kind="structurally_symmetric"`` (the same, for a matrix whose pattern is symmetric, as every
    FE matrix's is: pivots are taken on the diagonal, small ones perturbed, and iterative
    refinement runs only after a perturbation — enough for Newton, whose iterations correct any
    loss of accuracy; in the GTN RVE an iteration's solve is 15–40 % cheaper than with
    ``"nonsymmetric"``'s defaults, BENCHMARKS.md) pass all of it. The symbolic analysis is
    redone only when the pattern changes.
    """

    def __init__(self, kind: str = "spd") -> None:
        if kind not in _MTYPES:
            raise ValueError(f"kind must be one of {sorted(_MTYPES)}, got {kind!r}")
        self.kind = kind
        self._pardiso = pypardiso.PyPardisoSolver(mtype=_MTYPES[kind])
        if kind in _NEWTON_KINDS:
            # own settings instead of PARDISO's defaults (iparm(1) = 0), which add two steps of
            # iterative refinement to every solve (3 triangular solves instead of 1): here only
            # when pivots were perturbed (iparm(8) = 0); nested dissection (iparm(2) = 2),
            # pivot perturbation 1e-13 (iparm(10) = 13), no scaling or matching. Residuals stay
            # ~1e-10 of the right-hand side, far below the Newton tolerances these solve for.
            for position, value in ((1, 1), (2, 2), (8, 0), (10, 13)):
                self._pardiso.set_iparm(position, value)
        self._pattern: tuple[np.ndarray, np.ndarray] | None = None
        self._factored: sp.csr_matrix | None = None
        self.n_analyses = 0

    def factorize(self, matrix: sp.spmatrix, reanalyse: bool = False) -> None:
        """Numerically factorize ``matrix`` (n, n), reusing the analysis of an equal pattern
        unless ``reanalyse`` (used by the benchmark to time the full from-scratch cost)."""
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got shape {matrix.shape}")
        passed = sp.triu(matrix, format="csr") if self.kind in _UPPER else sp.csr_matrix(matrix, copy=True)
        passed.sort_indices()
        if not np.all(np.isfinite(passed.data)):
            raise ValueError("matrix has NaN or infinite entries")
        same = (
            not reanalyse
            and self._pattern is not None
            and self._pattern[0].shape == passed.indptr.shape
            and self._pattern[1].shape == passed.indices.shape
            and np.array_equal(self._pattern[0], passed.indptr)
            and np.array_equal(self._pattern[1], passed.indices)
        )
        rhs = np.zeros((passed.shape[0], 1), order="F")
        if not same:
            self._pardiso.set_phase(_PHASE_ANALYSIS)
            self._pardiso._call_pardiso(passed, rhs)
            self._pattern = (passed.indptr.copy(), passed.indices.copy())
            self.n_analyses += 1
        self._pardiso.set_phase(_PHASE_FACTORIZE)
        self._pardiso._call_pardiso(passed, rhs)
        self._factored = passed

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Solve with the last factorization; ``rhs`` is (n,) or (n, k), result has its shape."""
        if self._factored is None:
            raise RuntimeError("call factorize() before solve()")
        b = np.asfortranarray(rhs, dtype=np.float64)
        if b.shape[0] != self._factored.shape[0]:
            raise ValueError(f"rhs has {b.shape[0]} rows, the matrix {self._factored.shape[0]}")
        self._pardiso.set_phase(_PHASE_SOLVE)
        return self._pardiso._call_pardiso(self._factored, b)

    def inertia(self) -> tuple[int, int]:
        """(positive, negative) eigenvalue counts of the last factorized matrix, from PARDISO's
        pivots (Sylvester's law of inertia); ``kind="symmetric_indefinite"`` only."""
        if self.kind != "symmetric_indefinite":
            raise RuntimeError(f"inertia needs kind='symmetric_indefinite', this solver is {self.kind!r}")
        if self._factored is None:
            raise RuntimeError("call factorize() before inertia()")
        return int(self._pardiso.iparm[21]), int(self._pardiso.iparm[22])

    def __del__(self) -> None:  # release PARDISO's internal memory
        try:
            self._pardiso.free_memory(everything=True)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class SPDSolver(PardisoSolver):
    """:class:`PardisoSolver` for symmetric positive definite matrices."""

    def __init__(self) -> None:
        super().__init__("spd")
