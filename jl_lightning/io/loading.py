"""Read a points file (.npy, .npz, .pt, .csv, .parquet) into a 2-D numeric array.

Every failure raises :class:`~jl_lightning.errors.JLInputError` naming the file and,
where it applies, the row and column, so a user never sees a traceback from numpy
or torch for a mistake in their data.
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from jl_lightning.errors import JLInputError
from jl_lightning.io.validation import check_sparse
from jl_lightning.sparse_rows import SparseRows

log = logging.getLogger("jl_lightning")
SUPPORTED_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".csv", ".parquet")


def load_points(
    path: str | Path, key: str | None = None, header="auto", key_option: str = "data.source.key"
) -> np.ndarray:
    """Load the array stored at ``path``.

    Parameters
    ----------
    path:
        A ``.npy``, ``.npz``, ``.pt``/``.pth`` or ``.csv`` file holding an
        (n points x d features) array.
    key:
        For ``.npz`` files and ``.pt`` files holding a dict: which entry to read.
        May be omitted when the file holds exactly one array.
    header:
        For ``.csv``: ``"auto"``, ``True`` or ``False`` (see :func:`csv_row_chunks`).
    key_option:
        How the error messages name the key option (``jl-embed`` has ``--key``).

    Returns
    -------
    The raw array, not yet validated (see :func:`jl_lightning.io.validation.validate_points`).
    """
    problem = path_problem(path)
    if problem:
        raise JLInputError(problem)
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if key is not None and suffix not in (".npz", ".pt", ".pth"):
        raise JLInputError(
            f"{path}: {key_option}={key} applies to .npz files and .pt dicts; a {suffix} file "
            "holds one array (leave the key unset)"
        )
    if header != "auto" and suffix != ".csv":
        raise JLInputError(f"{path}: data.source.header={header} applies to .csv files only (leave it auto)")
    if suffix == ".npy":
        return _load_npy(path)
    if suffix == ".npz":
        return _load_npz(path, key, key_option)
    if suffix in (".pt", ".pth"):
        return _load_pt(path, key, key_option)
    if suffix == ".csv":
        return _load_csv(path, header)
    if suffix == ".parquet":
        return _load_parquet(path)
    raise JLInputError(f"{path}: unsupported file type {suffix!r}; expected one of {', '.join(SUPPORTED_SUFFIXES)}")


def path_problem(path) -> str | None:
    """Why ``data.source.path`` cannot be read, or None: empty, missing, a directory, or not a
    regular file (checked without opening it: reading a named pipe or a device would hang).
    The loader and the run guard (before the run folder exists) ask the same question."""
    if path is None or not str(path).strip():
        return "data.source.path is empty; set it to a points file (.npy, .npz, .pt, .csv, .parquet)"
    path = Path(str(path)).expanduser()
    try:
        return _path_problem(path)
    except OSError as err:  # a name or path longer than the file system takes, a permission
        return f"data.source.path cannot be read ({len(str(path))} characters): {err.strerror}"


def _path_problem(path: Path) -> str | None:
    if not path.exists():
        if path.is_symlink():  # exists() follows the link: a loop or a dangling link is not "not found"
            return f"data.source.path is a symbolic link that leads to no file (a loop, or a missing target): {path}"
        return f"data file not found: {path} (set data.source.path to an existing file)"
    if path.is_dir():
        return f"data.source.path is a directory, expected a file: {path}"
    if not path.is_file():
        return f"data.source.path is not a regular file (a pipe, socket or device): {path}"
    return None


def _as_numeric(path: Path, array, what: str = "array") -> np.ndarray:
    array = np.asanyarray(array)  # keeps a memory map a memory map
    if not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
    ):
        raise JLInputError(f"{path}: expected a numeric {what}, got dtype {array.dtype}")
    return array


def _load_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            raise JLInputError(f"{path}: could not read as .npy (the file does not start with the .npy header)")
        handle.seek(0)
        try:
            version = np.lib.format.read_magic(handle)
            shape, _, dtype = (
                np.lib.format.read_array_header_1_0(handle)
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0(handle)
            )
        except Exception as err:
            raise JLInputError(f"{path}: could not read the .npy header ({err})") from None
        data_start = handle.tell()
    if dtype.hasobject:  # object arrays need pickle, which we refuse
        raise JLInputError(f"{path}: expected a numeric array, got Python objects (dtype object)")
    expected = int(np.prod(shape)) * dtype.itemsize
    found = path.stat().st_size - data_start
    if found < expected:
        raise JLInputError(
            f"{path}: the file is truncated: its header promises shape {shape} of {dtype} "
            f"({expected} bytes of data), the file holds {found}"
        )
    try:
        # memory-mapped: a large file is read as it is used, not copied up front
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as err:
        raise JLInputError(f"{path}: could not read as .npy ({type(err).__name__}: {err})") from None
    return _as_numeric(path, array)


def _pick_key(path: Path, keys: list[str], key: str | None, option: str) -> str:
    if key is not None:
        if key not in keys:
            raise JLInputError(f"{path}: no entry {key!r} ({option}); the file holds {keys}")
        return key
    if len(keys) == 1:
        return keys[0]
    raise JLInputError(f"{path}: holds {len(keys)} entries {keys}; choose one with {option}")


# the entries scipy.sparse.save_npz writes for every format (and indices/indptr or row/col)
SPARSE_NPZ_KEYS = {"data", "format", "shape"}


def _load_npz(path: Path, key: str | None, option: str = "data.source.key"):
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key is None and SPARSE_NPZ_KEYS <= set(archive.files):
                return _load_sparse_npz(path, archive)
            chosen = _pick_key(path, list(archive.files), key, option)
            array = archive[chosen]
    except JLInputError:
        raise
    except Exception as err:
        raise JLInputError(f"{path}: could not read as .npz ({type(err).__name__}: {err})") from None
    return _as_numeric(path, array, f"array under key {chosen!r}")


def _load_sparse_npz(path: Path, archive):
    """A matrix saved by ``scipy.sparse.save_npz`` (CSR, CSC or COO), as :class:`SparseRows`;
    its arrays are read without unpickling and checked by scipy's constructors."""
    try:
        # lazy: scipy is needed only for sparse files
        import scipy.sparse as sp  # noqa: PLC0415
    except ImportError:
        raise JLInputError(f"{path}: a scipy.sparse matrix; reading it needs scipy (pip install scipy)") from None
    fmt = str(archive["format"].item() if archive["format"].ndim == 0 else archive["format"])
    fmt = fmt.removeprefix("b'").removesuffix("'")
    shape = tuple(int(v) for v in archive["shape"])
    if len(shape) != 2:
        raise JLInputError(f"{path}: a sparse matrix must be 2-D (n points x d features), got shape {shape}")
    try:
        if fmt in ("csr", "csc"):
            build = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
            matrix = build((archive["data"], archive["indices"], archive["indptr"]), shape=shape)
        elif fmt == "coo":
            matrix = sp.coo_matrix((archive["data"], (archive["row"], archive["col"])), shape=shape)
        else:
            raise JLInputError(f"{path}: sparse format {fmt!r}; expected csr, csc or coo (scipy.sparse.save_npz)")
        if fmt != "coo":
            matrix.check_format()
    except JLInputError:
        raise
    except Exception as err:  # inconsistent index arrays, a missing entry
        raise JLInputError(f"{path}: could not read as a scipy.sparse matrix ({type(err).__name__}: {err})") from None
    return SparseRows(check_sparse(matrix, str(path)))


def _load_pt(path: Path, key: str | None, option: str = "data.source.key") -> np.ndarray:
    # lazy: torch loads only for .pt files
    import torch  # noqa: PLC0415

    try:
        with warnings.catch_warnings():  # torch's own advice on a refused file: the one line below says it
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if "Weights only load failed" in str(err):  # torch's advice to unpickle is not ours to give
            raise JLInputError(
                f"{path}: holds pickled Python objects, which are never loaded; save a tensor "
                "or a dict of tensors (torch.save(tensor, path))"
            ) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise JLInputError(f"{path}: could not read as a torch file ({type(err).__name__}: {first})") from None
    if isinstance(obj, dict):
        obj = obj[_pick_key(path, [str(k) for k in obj.keys()], key, option)]
    elif key is not None:
        raise JLInputError(
            f"{path}: {option}={key} applies to a dict of tensors; this file holds one "
            f"{type(obj).__name__} (leave the key unset)"
        )
    if not isinstance(obj, torch.Tensor):
        raise JLInputError(f"{path}: expected a tensor (or a dict of tensors), got {type(obj).__name__}")
    if obj.layout != torch.strided:
        raise JLInputError(f"{path}: holds a sparse tensor ({obj.layout}); save it dense (tensor.to_dense())")
    if obj.is_complex():
        raise JLInputError(f"{path}: expected a real tensor, got dtype {obj.dtype}")
    return obj.detach().to(torch.float64).numpy()


def _load_csv(path: Path, header="auto") -> np.ndarray:
    """Parse a comma-separated file whole (see :func:`csv_row_chunks`)."""
    _, chunks = csv_row_chunks(path, 65536, header)
    blocks = list(chunks)
    return np.concatenate(blocks) if blocks else np.empty((0, 0))


HEADER_CHOICES = ("auto", True, False)


def is_index_header(cells: list[str]) -> bool:
    """Cells that read 0, 1, ..., d-1 or 1, ..., d: the column names pandas writes for unnamed columns."""
    try:
        values = [int(c.strip()) for c in cells]
    except ValueError:
        return False
    return values in (list(range(len(cells))), list(range(1, len(cells) + 1)))


def csv_row_chunks(path: Path, chunk_rows: int, header="auto") -> tuple[int | None, Iterator[np.ndarray]]:
    """(number of columns, iterator of float64 row chunks) of a numeric CSV, read as it goes.

    ``header`` (``data.source.header``, ``jl-embed --header``): ``True``, the first non-blank
    line is a header; ``False``, it is data; ``"auto"``, it is a header when no cell of it is a
    number, or when its cells are the column indices 0 .. d-1 or 1 .. d (what
    ``pandas.to_csv(index=False)`` writes for unnamed columns; the log says so). Blank lines
    are skipped. A ragged row or a cell that is not a number raises :class:`JLInputError`
    naming the line and the column (by its header name when there is one). The width is
    None for a file without data or header; ``jl-embed`` streams through this too.
    """
    if header not in HEADER_CHOICES:
        raise JLInputError(f"{path}: the header option must be auto, true or false, got {header!r}")
    handle = open(path, newline="", encoding="utf-8-sig")  # a byte-order mark is not part of the first cell
    reader = csv.reader(handle)
    first = next(((reader.line_num, cells) for cells in reader if cells and any(c.strip() for c in cells)), None)
    if first is None:
        handle.close()
        return None, iter(())
    names = _header_names(path, first[1], header)  # the column names, or None
    row_parser = _RowParser(path, names or len(first[1]), "the header" if names else "the first data line")

    def chunks() -> Iterator[np.ndarray]:
        with handle:
            rows = [] if names is not None else [row_parser.parse(*first)]
            for cells in reader:
                if not cells or not any(c.strip() for c in cells):
                    continue  # blank line
                rows.append(row_parser.parse(reader.line_num, cells))
                if len(rows) == chunk_rows:
                    yield np.asarray(rows, dtype=np.float64)
                    rows = []
            if rows:
                yield np.asarray(rows, dtype=np.float64)

    return row_parser.width, chunks()


def _header_names(path: Path, cells: list[str], header) -> list[str] | None:
    """The first line's cells as column names when it is a header (see :func:`csv_row_chunks`), else None."""
    if header is True or (header == "auto" and not any(_is_number(c) for c in cells)):
        return [c.strip() for c in cells]
    if header == "auto" and is_index_header(cells):
        names = [c.strip() for c in cells]
        shown = ",".join(names[:4]) + (",..." if len(names) > 4 else "")
        log.info(
            "%s: its first line %s reads as column indices, so it is taken as a header "
            "(data.source.header=false reads it as data)",
            path,
            shown,
        )
        return names
    return None


class _RowParser:
    """One CSV line as floats, or a JLInputError naming the line and the column (by its header
    name when there is one). ``columns``: the header's names, or the width of the first line."""

    def __init__(self, path: Path, columns: list[str] | int, like: str):
        self.path, self.like = path, like
        self.names = columns if isinstance(columns, list) else None
        self.width = len(columns) if isinstance(columns, list) else columns

    def parse(self, line_no: int, cells: list[str]) -> list[float]:
        if len(cells) != self.width:
            raise JLInputError(
                f"{self.path}: line {line_no} has {len(cells)} columns, expected {self.width} like {self.like}"
            )
        row = []
        for col, cell in enumerate(cells, start=1):
            try:
                row.append(float(cell))
            except ValueError:
                name = f" ({self.names[col - 1]!r})" if self.names else ""
                raise JLInputError(
                    f"{self.path}: line {line_no}, column {col}{name}: {cell.strip()!r} is not a number"
                ) from None
        return row


def _load_parquet(path: Path) -> np.ndarray:
    """Every column of a Parquet file must be numeric; needs pyarrow (an optional dependency)."""
    try:
        # lazy: pyarrow is optional (.parquet files)
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise JLInputError(f"{path}: reading .parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as err:
        raise JLInputError(f"{path}: could not read as .parquet ({type(err).__name__}: {err})") from None
    columns = []
    for name, column in zip(table.column_names, table.columns):
        values = column.to_numpy(zero_copy_only=False)
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise JLInputError(f"{path}: column {name!r} is not numeric (type {column.type})")
        columns.append(values.astype(np.float64))
    if not columns:
        return np.empty((0, 0))
    return np.stack(columns, axis=1)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
