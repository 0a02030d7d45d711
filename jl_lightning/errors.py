import numpy as np

"""The one exception type for a user's mistake.

Anything the user can fix (a missing file, a NaN row, ``model.k=0``) raises
:class:`JLInputError` with a message that names the file, row or option and what
was expected. ``jl-train`` prints that message and exits with status 2 instead
of a traceback from deep inside torch.
"""


class JLInputError(ValueError):
    """Bad input: a data file, an array or a config option the user can fix."""


class JLInputTypeError(JLInputError, TypeError):
    """Bad input of the wrong type (an object array holding something that is not a number):
    a ``TypeError`` as numpy's conversion raises it, and a ``JLInputError`` like every other."""


class JLRunError(JLInputError):
    """A run that cannot produce a trustworthy result (training diverged to NaN or Inf, a
    matrix file holds NaN): reported like bad input, one line and exit status 2."""


class DuplicatePointsWarning(UserWarning):
    """Pairs mode found repeated points: their pairs are at distance 0 and left out of every figure."""


def check_finite_matrix(matrix, where: str):
    """``matrix`` unchanged, or :class:`JLRunError` naming ``where`` when it holds NaN or Inf."""

    array = np.asarray(matrix)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise JLRunError(
            f"{where}: the matrix holds {bad} NaN or Inf entr{'y' if bad == 1 else 'ies'} "
            f"of {array.size}; refusing to use it"
        )
    return matrix
