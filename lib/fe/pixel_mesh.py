"""An SfePy problem on an N x N pixel grid: one bilinear quadrilateral per pixel, periodic BCs.

SfePy builds the mesh, the displacement field, the periodic conditions (Left/Right matched
with ``match_y_line``, Bottom/Top with ``match_x_line``, as in SfePy's
``homogenization/rs_correctors.py``) and assembles; the problem is built once per grid size
and only its materials change from one sample to the next (``set_all_data``), as SfePy
issue #712 recommends. The caller owns the linear algebra.

Conventions: the cell is the unit square [0, 1]^2; image pixel ``img[i, j]`` is the element
whose centre is x = (j + 1/2) h, y = 1 - (i + 1/2) h with h = 1/N, so ``imshow`` of an image
shows the cell the right way up and x (the loading direction of Part A) runs along columns.
Strains and stresses are Voigt vectors (xx, yy, xy) with engineering shear strain.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import scipy.sparse as sp

from sfepy.base.base import output

output.set_output(quiet=True)  # keep SfePy's console chatter out of notebooks and logs
with contextlib.redirect_stdout(io.StringIO()):  # SfePy prints a notice about optional jax terms
    import sfepy.terms  # noqa: F401

import sfepy.discrete.fem.periodic as periodic  # noqa: E402
from sfepy.discrete import (  # noqa: E402
    Equation,
    Equations,
    FieldVariable,
    Function,
    Functions,
    Integral,
    Material,
    Problem,
)
from sfepy.discrete.conditions import Conditions, EssentialBC, PeriodicBC  # noqa: E402
from sfepy.discrete.common.extmods.assemble import assemble_matrix, assemble_vector  # noqa: E402
from sfepy.discrete.fem import Field, FEDomain  # noqa: E402
from sfepy.mesh.mesh_generators import gen_block_mesh  # noqa: E402
from sfepy.terms import Term  # noqa: E402


def check_binary_image(img: np.ndarray, size: int | None = None, name: str = "img") -> np.ndarray:
    """Validate a binary microstructure image and return it as ``(N, N) uint8`` of 0/1.

    Raises ValueError naming the problem: not 2-D, not square, wrong size, NaN, non-binary.
    """
    arr = np.asarray(img)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square 2-D image, got shape {arr.shape}")
    if size is not None and arr.shape[0] != size:
        raise ValueError(f"{name} must be {size}x{size} pixels, got {arr.shape[0]}x{arr.shape[1]}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if not np.all((arr == 0) | (arr == 1)):
        bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5]
        raise ValueError(f"{name} must be binary (0/1), found values such as {bad.tolist()}")
    return arr.astype(np.uint8)


def check_phase_image(img: np.ndarray, size: int, n_phases: int, name: str = "img") -> np.ndarray:
    """Validate an image of phase indices ``0 .. n_phases - 1``; return it as ``(N, N) uint8``."""
    arr = np.asarray(img)
    if arr.ndim != 2 or arr.shape != (size, size):
        raise ValueError(f"{name} must be {size}x{size} pixels, got shape {arr.shape}")
    if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n_phases:
        raise ValueError(f"{name} must hold integer phase indices 0..{n_phases - 1}, got dtype "
                         f"{arr.dtype}, values {np.unique(arr)[:5].tolist()}")
    return arr.astype(np.uint8)


class PeriodicPixelProblem:
    """SfePy linear-elastic problem with periodic fluctuations on an ``size`` x ``size`` pixel grid.

    The equation is ``dw_lin_elastic(m.D, v, u) + dw_lin_prestress(s.S, v) = 0`` on the unit
    cell. ``u`` is the periodic displacement fluctuation; one corner is fixed to remove the
    rigid translation. Matrices and vectors are returned on the reduced (active) DOFs.

    Attributes
    ----------
    size: pixels per side N.
    n_cells: N*N elements; ``n_qp``: quadrature points per element. The default
        ``quadrature_order=3`` is SfePy's 2 x 2 Gauss rule on quadrilaterals, exact for the
        bilinear element with a constant stiffness per pixel (order 2 gives 8 points).
    cell_pixel: (n_cells,) flat index into ``img.ravel()`` of each SfePy element.
    n_dofs: number of reduced (active) unknowns.
    """

    def __init__(self, size: int, quadrature_order: int = 3) -> None:
        if not isinstance(size, (int, np.integer)) or size < 2:
            raise ValueError(f"size must be an integer >= 2, got {size!r}")
        self.size = int(size)
        n = self.size
        h = 1.0 / n
        mesh = gen_block_mesh((1.0, 1.0), (n + 1, n + 1), (0.5, 0.5), name="pixels", verbose=False)
        domain = FEDomain("unit_cell", mesh)
        tol = 1e-3 * h
        omega = domain.create_region("Omega", "all")
        left = domain.create_region("Left", f"vertices in (x < {tol})", "facet")
        right = domain.create_region("Right", f"vertices in (x > {1 - tol})", "facet")
        bottom = domain.create_region("Bottom", f"vertices in (y < {tol})", "facet")
        top = domain.create_region("Top", f"vertices in (y > {1 - tol})", "facet")
        corner = domain.create_region("Corner", f"vertices in (x < {tol}) & (y < {tol})", "vertex")

        field = Field.from_args("displacement", np.float64, 2, omega, approx_order=1)
        self.u = FieldVariable("u", "unknown", field)
        v = FieldVariable("v", "test", field, primary_var_name="u")
        integral = Integral("i", order=quadrature_order)

        centres = domain.cmesh.get_centroids(2)
        col = np.clip(np.floor(centres[:, 0] / h).astype(np.int64), 0, n - 1)
        row = n - 1 - np.clip(np.floor(centres[:, 1] / h).astype(np.int64), 0, n - 1)
        self.cell_pixel = row * n + col
        if np.unique(self.cell_pixel).size != n * n:
            raise RuntimeError("pixel mesh: element-to-pixel map is not one-to-one")
        self.n_cells = n * n

        eye = np.eye(3)
        self.stiffness = Material("m", D=eye)
        self.prestress = Material("s", S=np.zeros((3, 1)))
        terms = [
            Term.new("dw_lin_elastic(m.D, v, u)", integral, omega, m=self.stiffness, v=v, u=self.u),
            Term.new("dw_lin_prestress(s.S, v)", integral, omega, s=self.prestress, v=v),
        ]
        self.problem = Problem("periodic_pixels", equations=Equations([Equation("balance", terms[0] + terms[1])]))
        functions = Functions([
            Function("match_x_line", periodic.match_x_line),
            Function("match_y_line", periodic.match_y_line),
        ])
        epbcs = Conditions([
            PeriodicBC("periodic_x", [left, right], {"u.all": "u.all"}, match="match_y_line"),
            PeriodicBC("periodic_y", [bottom, top], {"u.all": "u.all"}, match="match_x_line"),
        ])
        ebcs = Conditions([EssentialBC("fixed_corner", corner, {"u.all": 0.0})])
        self.problem.set_bcs(ebcs=ebcs, epbcs=epbcs)
        self.problem.functions = functions
        self.problem.time_update(functions=functions)
        self.problem.update_materials()

        self._equations = self.problem.equations
        self._key_D = next(iter(self.stiffness.datas))
        self._key_S = next(iter(self.prestress.datas))
        self.n_qp = self.stiffness.datas[self._key_D]["D"].shape[1]
        self._matrix = self._equations.create_matrix_graph()
        self.n_dofs = self._matrix.shape[0]
        self._pixel_cell = np.empty_like(self.cell_pixel)
        self._pixel_cell[self.cell_pixel] = np.arange(self.n_cells)

        # element DOFs for element-level operators (e.g. B-bar) assembled by SfePy's assembler
        variable = self._equations.variables["u"]
        econn = variable.field.get_econn("cell", variable.field.region)  # (n_cells, 4) nodes, CCW
        coors = variable.field.get_coor()
        self.element_node_offsets = coors[econn[0]] - coors[econn[0, 0]]  # (4, 2), the same everywhere
        if not np.allclose(coors[econn] - coors[econn[:, :1]], self.element_node_offsets, atol=1e-12):
            raise RuntimeError("pixel mesh: elements are not translated copies of each other")
        self.element_dofs = np.stack([2 * econn, 2 * econn + 1], axis=2).reshape(-1, 8)  # (n_cells, 8)
        self._element_eqs = np.ascontiguousarray(variable.eq_map.eq[self.element_dofs], dtype=np.int32)
        self._cells = np.arange(self.n_cells, dtype=np.int32)

    # --- materials -------------------------------------------------------------------------
    def pixels_to_cells(self, pixel_values: np.ndarray) -> np.ndarray:
        """Reorder per-pixel values (N, N, ...) into SfePy element order (n_cells, ...)."""
        values = np.asarray(pixel_values)
        return values.reshape((self.n_cells,) + values.shape[2:])[self.cell_pixel]

    def cells_to_pixels(self, cell_values: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`pixels_to_cells`: (n_cells, ...) -> (N, N, ...)."""
        values = np.asarray(cell_values)
        return values[self._pixel_cell].reshape((self.size, self.size) + values.shape[1:])

    def _per_qp(self, values: np.ndarray, trailing: tuple[int, ...], name: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape == (self.n_cells,) + trailing:
            values = np.broadcast_to(values[:, None], (self.n_cells, self.n_qp) + trailing)
        if values.shape != (self.n_cells, self.n_qp) + trailing:
            raise ValueError(
                f"{name} must have shape (n_cells, {', '.join(map(str, trailing))}) or "
                f"(n_cells, n_qp, {', '.join(map(str, trailing))}) with n_cells={self.n_cells}, "
                f"n_qp={self.n_qp}; got {values.shape}"
            )
        return np.ascontiguousarray(values)

    def set_stiffness(self, stiffness: np.ndarray) -> None:
        """Set the tangent stiffness, (n_cells, 3, 3) or (n_cells, n_qp, 3, 3), in SfePy cell order."""
        self.stiffness.set_all_data({self._key_D: {"D": self._per_qp(stiffness, (3, 3), "stiffness")}})

    # --- assembly --------------------------------------------------------------------------
    def assemble_stiffness(self) -> sp.csr_matrix:
        """Assemble K = sum_e int B^T D B over the reduced DOFs: (n_dofs, n_dofs) CSR, a new copy."""
        self._matrix.data[:] = 0.0
        self._equations.evaluate(
            mode="weak", dw_mode="matrix", asm_obj=self._matrix,
            select_term=lambda term: term.name == "dw_lin_elastic",
        )
        return self._matrix.copy()

    def assemble_stress_load(self, stress: np.ndarray) -> np.ndarray:
        """Assemble f = int B^T S for a stress field S: (n_cells, [n_qp,] 3) -> (n_dofs,) vector."""
        s = self._per_qp(stress, (3,), "stress")[..., None]
        self.prestress.set_all_data({self._key_S: {"S": s}})
        vec = np.zeros(self.n_dofs)
        self._equations.evaluate(
            mode="weak", dw_mode="vector", asm_obj=vec,
            select_term=lambda term: term.name == "dw_lin_prestress",
        )
        return vec

    def assemble_element_matrices(self, element_matrices: np.ndarray) -> sp.csr_matrix:
        """Assemble (n_cells, 8, 8) element matrices (DOFs ordered node-major: x0, y0, x1, ...)
        into the reduced (n_dofs, n_dofs) CSR matrix with SfePy's assembler; a new copy."""
        mats = np.ascontiguousarray(element_matrices, dtype=np.float64)
        if mats.shape != (self.n_cells, 8, 8):
            raise ValueError(f"element matrices must have shape ({self.n_cells}, 8, 8), got {mats.shape}")
        self._matrix.data[:] = 0.0
        assemble_matrix(self._matrix.data, self._matrix.indptr, self._matrix.indices,
                        mats[:, None], self._cells, 1.0, self._element_eqs, self._element_eqs)
        return self._matrix.copy()

    def assemble_element_vectors(self, element_vectors: np.ndarray) -> np.ndarray:
        """Assemble (n_cells, 8) element vectors into a reduced (n_dofs,) vector (SfePy's assembler)."""
        vecs = np.ascontiguousarray(element_vectors, dtype=np.float64)
        if vecs.shape != (self.n_cells, 8):
            raise ValueError(f"element vectors must have shape ({self.n_cells}, 8), got {vecs.shape}")
        out = np.zeros(self.n_dofs)
        assemble_vector(out, vecs[:, None, :, None], self._cells, 1.0, self._element_eqs)
        return out

    def element_values(self, reduced: np.ndarray) -> np.ndarray:
        """Reduced DOF vector (n_dofs,) -> element DOF values (n_cells, 8), periodic images filled."""
        full = self._equations.make_full_vec(np.asarray(reduced, dtype=np.float64))
        return full[self.element_dofs]

    def expand(self, reduced: np.ndarray) -> np.ndarray:
        """Reduced DOF vector (n_dofs,) -> nodal fluctuation displacements (n_nodes, 2)."""
        full = self._equations.make_full_vec(np.asarray(reduced, dtype=np.float64))
        return full.reshape((-1, 2))
