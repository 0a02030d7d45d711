"""Sparse points as the tile code reads points: rows by slice or index, densified a tile at a time.

TF-IDF and bag-of-words rows have 10^4 to 10^6 features and a few hundred nonzeros each;
their dense n x d copy does not fit in memory. Every pass in jl_lightning already reads
points tile by tile (``points[a:b]``, ``points[index]``) within a memory budget that
accounts for d, so a sparse matrix only has to look like an array of rows: :class:`SparseRows`
holds a scipy CSR matrix, answers ``len``, ``shape``, ``dtype`` and ``ndim``, returns
:class:`SparseRows` for row selections, and :func:`dense_rows` turns one selection (a tile,
a chunk) into a dense array. Nothing of size n x d is formed.

scipy is needed only by a caller that has sparse data, and so has scipy.
"""

from __future__ import annotations

import numpy as np


def is_sparse(values) -> bool:
    """Whether ``values`` is a scipy.sparse matrix or array, or :class:`SparseRows` (told
    without importing scipy)."""
    return isinstance(values, SparseRows) or type(values).__module__.startswith("scipy.sparse")


class SparseRows:
    """Rows of a scipy.sparse matrix (kept as CSR) that read like a 2-D array's rows.

    Parameters
    ----------
    matrix : scipy.sparse matrix or array
        Any format; converted to CSR once.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> rows = SparseRows(sp.eye(4, 6, format="csr"))
    >>> len(rows), rows.shape, rows[1:3].shape
    (4, (4, 6), (2, 6))
    >>> dense_rows(rows[[0, 3]]).tolist()[1][:4]
    [0.0, 0.0, 0.0, 1.0]
    """

    ndim = 2

    def __init__(self, matrix):
        # lazy: scipy is needed only where sparse data is
        import scipy.sparse as sp  # noqa: PLC0415

        self.matrix = matrix.matrix if isinstance(matrix, SparseRows) else sp.csr_matrix(matrix)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.matrix.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.matrix.dtype

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> "SparseRows":
        if isinstance(index, tuple):
            raise TypeError("SparseRows selects rows only: points[rows], not points[rows, columns]")
        if not isinstance(index, slice):
            index = np.asarray(index)
        return SparseRows(self.matrix[index])

    def __array__(self, dtype=None, copy=None):
        # a whole sparse matrix is never densified behind the caller's back
        raise TypeError("SparseRows is not densified as a whole; read it a tile at a time with dense_rows(points[a:b])")

    def astype(self, dtype, copy: bool = True) -> "SparseRows":
        return SparseRows(self.matrix.astype(dtype, copy=copy))

    def sq_norms(self) -> np.ndarray:
        """||x_i||^2 of every row, float64."""
        return row_sq_norms(self.matrix)

    def abs_max(self) -> float:
        return float(np.abs(self.matrix.data).max()) if self.nnz else 0.0

    def scaled_rows(self, factors: np.ndarray) -> "SparseRows":
        """Row i times ``factors[i]``."""
        # lazy: scipy is needed only where sparse data is
        import scipy.sparse as sp  # noqa: PLC0415

        return SparseRows(sp.diags(np.asarray(factors, dtype=np.float64)) @ self.matrix)

    def __mul__(self, scalar: float) -> "SparseRows":
        return SparseRows(self.matrix * scalar)

    def __truediv__(self, scalar: float) -> "SparseRows":
        return SparseRows(self.matrix / scalar)


def row_sq_norms(matrix) -> np.ndarray:
    """||x_i||^2 of every row of a scipy.sparse matrix, float64 (the stored entries only)."""
    matrix = matrix.astype(np.float64)
    return np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel()


def dense_rows(rows) -> np.ndarray:
    """A selection of rows as a dense numpy array: :class:`SparseRows` and scipy.sparse are
    densified (a tile or a chunk, never a whole data set), anything else goes to ``np.asarray``."""
    if isinstance(rows, SparseRows):
        return rows.matrix.toarray()
    if is_sparse(rows):
        return rows.toarray()
    return np.asarray(rows)
