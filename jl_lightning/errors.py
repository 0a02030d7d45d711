"""The one exception type for a user's mistake.

Anything the user can fix (a missing file, a NaN row, ``model.k=0``) raises
:class:`JLInputError` with a message that names the file, row or option and what
was expected. ``jl-train`` prints that message and exits with status 2 instead
of a traceback from deep inside torch.
"""


class JLInputError(ValueError):
    """Bad input: a data file, an array or a config option the user can fix."""
