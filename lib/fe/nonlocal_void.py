"""Nonlocal average of a Gauss-point field of a periodic pixel RVE over a length, within each phase.

The regularization of the nonlocal GTN RVE (:class:`lib.fe.gtn_rve.GTNRVE` with
``nonlocal_length > 0``): the void growth of each increment is averaged by the implicit-gradient
(screened Poisson) operator ``(1 - l^2 Laplace)^-1`` of Peerlings et al. (1996) Int J Numer
Methods Eng 39:3391, applied to the void-growth field as in the nonlocal GTN models of
Tvergaard & Needleman (1995) Int J Solids Struct 32:1063 (nonlocal void growth) and Reusch,
Svendsen & Klingbeil (2003) Eur J Mech A 22:779 (gradient-enhanced GTN). On the periodic grid
it is diagonal in Fourier space and costs two FFTs per phase.

The 2 x 2 Gauss points of the N x N pixel grid are treated as a uniform 2N x 2N grid of spacing
h/2 (they sit at ±h/(2√3) from each pixel's centre, i.e. at spacings 0.42 h and 0.58 h); the
Laplacian is the 5-point one on that grid. The average is restricted to each phase: a point
averages only over points of its own phase, ``A[g] = H[χ g] / H[χ]`` with χ the phase's
indicator and ``H`` the screened-Poisson smoothing, so that a field uniform within each phase is
unchanged (the layered laminate stays exact) and ferrite damage does not leak into martensite.
Lengths are in units of the RVE side (the cell is the unit square).
"""
from __future__ import annotations

import numpy as np

from lib.fe.pixel_mesh import PeriodicPixelProblem


class PhaseNonlocalAverage:
    """``A[g]`` for Gauss-point fields ``g: (n_cells * 4,)`` of one RVE image (phases fixed).

    ``fe``: the pixel problem (its SfePy cell order); ``phase: (n_cells * 4,)`` int, the phase
    index of each Gauss point (cell-major, Gauss points in the order of
    :func:`lib.fe.gtn_rve.bbar_operator`); ``length``: l > 0 in units of the RVE side.
    """

    def __init__(self, fe: PeriodicPixelProblem, phase: np.ndarray, length: float) -> None:
        if not (np.isfinite(length) and length > 0):
            raise ValueError(f"nonlocal length must be a positive fraction of the RVE side, got {length}")
        n = fe.size
        phase = np.asarray(phase)
        if phase.shape != (fe.n_cells * 4,):
            raise ValueError(f"phase must have shape ({fe.n_cells * 4},) (one index per Gauss point), "
                             f"got {phase.shape}")
        self.length = float(length)
        pixel = np.repeat(fe.cell_pixel, 4)
        q = np.tile(np.arange(4), fe.n_cells)
        row, col = np.divmod(pixel, n)
        # pixel (i, j) has its centre at x = (j + 1/2) h, y = 1 - (i + 1/2) h; Gauss point q has
        # xi = ±1 for q % 2 = 0/1 and eta = ±1 for q // 2 = 0/1 (bbar_operator's order)
        self._index = (2 * row + 1 - q // 2) * (2 * n) + 2 * col + q % 2
        m = 2 * n
        k = np.arange(m)
        spacing = 1.0 / m
        lap = (4.0 / spacing**2) * np.sin(np.pi * k / m) ** 2  # 5-point Laplacian symbol, one axis
        self._symbol = 1.0 / (1.0 + self.length**2 * (lap[:, None] + lap[None, : m // 2 + 1]))
        self._shape = (m, m)
        self._masks = []
        for p in np.unique(phase):
            chi = np.zeros(m * m)
            chi[self._index] = phase == p
            weight = self._smooth(chi)
            self._masks.append((phase == p, chi.reshape(self._shape), weight[self._index][phase == p]))

    def _smooth(self, grid_values: np.ndarray) -> np.ndarray:
        """H[v] on the flattened (2N * 2N,) grid."""
        spectrum = np.fft.rfft2(grid_values.reshape(self._shape)) * self._symbol
        return np.fft.irfft2(spectrum, s=self._shape).ravel()

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """The phase-restricted nonlocal average of ``values: (n_cells * 4,)`` (same shape)."""
        values = np.asarray(values, dtype=float)
        grid = np.zeros(self._shape[0] * self._shape[1])
        grid[self._index] = values
        out = np.empty_like(values)
        for in_phase, chi, weight in self._masks:
            out[in_phase] = self._smooth(grid * chi.ravel())[self._index][in_phase] / weight
        return out
