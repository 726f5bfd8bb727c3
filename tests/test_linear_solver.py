"""The PARDISO wrapper: every matrix kind solves to round-off; the inertia counts eigenvalues."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from lib.fe.linear_solver import PardisoSolver


def _matrix(kind: str, n: int = 300) -> sp.csr_matrix:
    rng = np.random.default_rng(3)
    pattern = sp.random(n, n, density=0.03, random_state=4)
    pattern = (pattern + pattern.T + sp.identity(n)).tocsr()  # symmetric pattern
    values = pattern.copy()
    values.data = rng.normal(size=values.nnz)
    if kind == "structurally_symmetric":
        return (values + 10 * sp.identity(n)).tocsr()  # nonsymmetric values, symmetric pattern
    return (0.5 * (values + values.T)).tocsr()  # symmetric, indefinite


@pytest.mark.parametrize("kind", ["nonsymmetric", "structurally_symmetric", "symmetric_indefinite"])
def test_every_kind_solves_to_round_off(kind):
    matrix = _matrix("structurally_symmetric" if kind != "symmetric_indefinite" else "indefinite")
    solver = PardisoSolver(kind)
    solver.factorize(matrix)
    rhs = np.random.default_rng(5).normal(size=(matrix.shape[0], 3))
    x = solver.solve(rhs)
    assert np.abs(matrix @ x - rhs).max() < 1e-9 * np.abs(rhs).max()


def test_inertia_counts_the_eigenvalues_and_is_refused_for_other_kinds():
    matrix = _matrix("indefinite")
    eigenvalues = np.linalg.eigvalsh(matrix.toarray())
    solver = PardisoSolver("symmetric_indefinite")
    solver.factorize(matrix)
    assert solver.inertia() == ((eigenvalues > 0).sum(), (eigenvalues < 0).sum())
    assert 0 < solver.inertia()[1] < matrix.shape[0]
    other = PardisoSolver("structurally_symmetric")
    other.factorize(matrix)
    with pytest.raises(RuntimeError, match="symmetric_indefinite"):
        other.inertia()
