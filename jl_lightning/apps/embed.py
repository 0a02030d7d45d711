"""``jl-embed RUN_DIR INPUT OUTPUT``: apply a learned matrix to a file of vectors, in chunks.

    jl-embed outputs/runs/<date>/<time>_train vectors.npy embedded.npy

RUN_DIR is a jl-train run folder (its embedding.npy), a .npz saved by
``JLEmbedding.save`` or a bare (k, d) .npy matrix. INPUT is a .npy (read in chunks
straight from the file, so its size does not matter) or a .csv (read in chunks of
lines); .npz and .pt inputs are loaded whole. OUTPUT is a .npy (written chunk by
chunk) or a .csv. Rows of OUTPUT are ``x @ embedding.T`` for the rows x of INPUT.

Peak memory is the matrix plus one chunk of input and output, whatever the file's size:
``--chunk-rows`` rows, by default as many as fit in ``CHUNK_BUDGET`` bytes or in a quarter
of what the process may still allocate (available memory, an address-space limit), if less.
An existing OUTPUT is never overwritten: the result goes to a temporary file next to it,
renamed into place at the end. Only numpy is used, so the command starts fast and stays small.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from jl_lightning.errors import JLInputError
from jl_lightning.io.loading import csv_row_chunks
from jl_lightning.io.run_folder import atomic_write
from jl_lightning.io.validation import check_fits, check_rows
from jl_lightning.sparse_rows import SparseRows

# bytes of one chunk's arrays: the rows as read, their float64 copy, the output
CHUNK_BUDGET = 64 * 2**20


def memory_for_chunks() -> int:
    """Bytes one chunk may take: ``CHUNK_BUDGET``, or a quarter of what this process may still
    allocate (the machine's available memory, an address-space limit such as ``ulimit -v``).

    Examples
    --------
    >>> 0 < memory_for_chunks() <= CHUNK_BUDGET
    True
    """
    limits = [CHUNK_BUDGET]
    try:
        limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
    except (ValueError, OSError, AttributeError):  # not a POSIX system that says
        pass
    try:
        import resource  # noqa: PLC0415 (POSIX only)

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as handle:  # the address space this process uses now
                used = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limits.append(max(0, soft - used) // 4)
    except (ImportError, OSError, ValueError):
        pass
    return max(1, min(limits))


def chunk_rows_for(d: int, k: int, sparse: bool = False) -> int:
    """Rows per chunk within :func:`memory_for_chunks`: a dense row is read, copied to float64
    and checked (3 d values of 8 bytes) and gives k outputs; a sparse row (``sparse``, default
    False) holds few of its d.

    Examples
    --------
    >>> 1 <= chunk_rows_for(384, 32) <= CHUNK_BUDGET // (8 * (3 * 384 + 64))
    True
    """
    per_row = 8 * (2 * k + (64 if sparse else 3 * d))
    return max(1, memory_for_chunks() // per_row)


# ------------------------------------------------------------------ input
def _npy_header(handle, path: Path) -> tuple[tuple, bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    except ValueError as err:
        raise JLInputError(f"{path}: could not read as .npy ({err})") from None
    return shape, fortran, dtype


def npy_chunks(path: Path, chunk_rows: int) -> tuple[tuple, Iterator[np.ndarray]]:
    """(shape, iterator of row chunks) of a 2-D C-ordered numeric .npy file, read with plain file reads."""
    handle = open(path, "rb")
    shape, fortran, dtype = _npy_header(handle, path)
    if dtype.hasobject:
        handle.close()
        raise JLInputError(f"{path}: expected a numeric array, got Python objects (dtype object)")
    # bool as jl-train, fit and transform take it (check_array): 0 and 1
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        handle.close()
        raise JLInputError(f"{path}: expected a numeric array, got dtype {dtype}")
    if len(shape) != 2:
        handle.close()
        raise JLInputError(f"{path}: expected a 2-D array (n vectors x d), got shape {shape}")
    if fortran and shape[0] > 1 and shape[1] > 1:
        handle.close()
        raise JLInputError(
            f"{path}: Fortran-ordered arrays cannot be streamed; save it with np.save(np.ascontiguousarray(x))"
        )
    n, d = shape

    def chunks():
        with handle:
            for start in range(0, n, chunk_rows):
                rows = min(chunk_rows, n - start)
                block = np.fromfile(handle, dtype=dtype, count=rows * d)
                if block.size != rows * d:
                    raise JLInputError(f"{path}: the file ends early (row {start + block.size // max(d, 1)} of {n})")
                yield block.reshape(rows, d)

    return shape, chunks()


def csv_chunks(path: Path, chunk_rows: int, header="auto") -> tuple[tuple, Iterator[np.ndarray]]:
    """(shape with n unknown (-1), iterator of row chunks) of a numeric CSV (the data loader's parser)."""
    width, chunks = csv_row_chunks(path, chunk_rows, header)
    if width is None:
        raise JLInputError(f"{path}: the file holds no vectors")
    return (-1, width), chunks


def open_input(
    path: Path, chunk_rows: int, key: str | None = None, header="auto", sparse_chunk_rows: int | None = None
) -> tuple[tuple, Iterator[np.ndarray]]:
    """(shape, iterator of row chunks) of an input file; sparse rows (a ``save_npz`` file) come
    ``sparse_chunk_rows`` at a time (default ``chunk_rows``)."""
    if not path.exists():
        raise JLInputError(f"input file not found: {path}")
    if not path.is_file():  # checked before any open: reading a named pipe or a device would hang
        raise JLInputError(f"{path}: not a regular file (a directory, pipe, socket or device)")
    suffix = path.suffix.lower()
    if key is not None and suffix not in (".npz", ".pt", ".pth"):
        raise JLInputError(f"{path}: --key applies to .npz and .pt inputs; a {suffix} file holds one array")
    if header != "auto" and suffix != ".csv":
        raise JLInputError(f"{path}: --header applies to .csv inputs only")
    if suffix == ".npy":
        return npy_chunks(path, chunk_rows)
    if suffix == ".csv":
        return csv_chunks(path, chunk_rows, header)
    if suffix in (".npz", ".pt", ".pth"):
        # lazy: jl-embed loads only what the input file needs
        from jl_lightning.io.loading import load_points  # noqa: PLC0415

        array = load_points(path, key, key_option="--key")
        if isinstance(array, SparseRows):  # scipy.sparse.save_npz: row chunks stay sparse
            rows = sparse_chunk_rows or chunk_rows
            return array.shape, (array.matrix[i : i + rows] for i in range(0, len(array), rows))
        array = np.asarray(array)
        if array.ndim != 2:
            raise JLInputError(f"{path}: expected a 2-D array (n vectors x d), got shape {array.shape}")
        return array.shape, (array[i : i + chunk_rows] for i in range(0, len(array), chunk_rows))
    raise JLInputError(f"{path}: unsupported input type {suffix!r}; expected .npy, .csv, .npz or .pt")


# ----------------------------------------------------------------- output
class NpyWriter:
    """Write an (n, k) .npy chunk by chunk; n is patched into the header at the end."""

    def __init__(self, handle, k: int, dtype: np.dtype):
        self.handle, self.k, self.dtype, self.rows = handle, k, np.dtype(dtype), 0
        self._write_header(0)

    def _write_header(self, n: int) -> None:
        """A version 1.0 header with n padded to a fixed width, so it can be rewritten in place."""
        descr = np.lib.format.dtype_to_descr(self.dtype)
        text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': ({n:>20}, {self.k}), }}"
        body = text.encode("latin1")
        pad = (64 - (10 + len(body) + 1) % 64) % 64
        body = body + b" " * pad + b"\n"
        self.handle.seek(0)
        self.handle.write(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body)

    def write(self, block: np.ndarray) -> None:
        self.handle.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += len(block)

    def close(self) -> None:
        self._write_header(self.rows)
        self.handle.seek(0, os.SEEK_END)


class CsvWriter:
    def __init__(self, handle, k: int, dtype):
        self.handle, self.rows = handle, 0

    def write(self, block: np.ndarray) -> None:
        np.savetxt(self.handle, block, delimiter=",", fmt="%.9g")
        self.rows += len(block)

    def close(self) -> None:
        pass


def embed_file(
    matrix: np.ndarray,
    input_path: str | Path,
    output_path: str | Path,
    chunk_rows: int | None = None,
    dtype: str = "float32",
    key: str | None = None,
    header="auto",
) -> int:
    """Stream ``input_path`` through ``matrix`` (k, d) into a new ``output_path``; returns the row
    count. ``chunk_rows`` None: sized from the memory this process may use (:func:`chunk_rows_for`)."""
    input_path, output_path = Path(input_path), Path(output_path)
    if chunk_rows is not None and chunk_rows <= 0:
        raise JLInputError(f"--chunk-rows must be positive, got {chunk_rows}")
    if output_path.exists():
        raise JLInputError(f"{output_path} exists; refusing to overwrite it (choose another OUTPUT)")
    out_suffix = output_path.suffix.lower()
    if out_suffix not in (".npy", ".csv"):
        raise JLInputError(f"{output_path}: unsupported output type {out_suffix!r}; expected .npy or .csv")
    if not output_path.parent.is_dir():
        raise JLInputError(f"{output_path}: the directory {output_path.parent} does not exist")
    k, d = matrix.shape
    sparse_rows = chunk_rows or chunk_rows_for(d, k, sparse=True)
    chunk_rows = chunk_rows or chunk_rows_for(d, k)
    shape, chunks = open_input(input_path, chunk_rows, key, header, sparse_rows)
    if shape[1] != d:
        raise JLInputError(
            f"{input_path}: vectors have dimension {shape[1]}, but the matrix maps d={d} to k={k}; they must match"
        )
    counted = {}

    def stream(handle) -> None:
        writer = (NpyWriter if out_suffix == ".npy" else CsvWriter)(handle, k, np.dtype(dtype))
        matrix_t = np.ascontiguousarray(matrix.T, dtype=np.float64)
        for block in chunks:
            block = check_rows(block, str(input_path), dim=d, first_row=writer.rows).astype(np.float64, copy=False)
            with np.errstate(over="ignore"):  # checked right below
                out = np.asarray(block @ matrix_t).astype(writer.dtype if out_suffix == ".npy" else np.float64)
            check_fits(out, str(input_path), writer.rows, "; try --dtype float64" if out.dtype == np.float32 else "")
            writer.write(out)
        if writer.rows == 0:  # refused as fit() and transform() refuse it
            raise JLInputError(
                f"{input_path}: the array is empty: 0 sample(s) (shape=(0, {d})) while a minimum of 1 is required"
            )
        writer.close()
        counted["rows"] = writer.rows

    try:
        atomic_write(output_path, stream, mode="wb" if out_suffix == ".npy" else "w")
    except FileExistsError:
        raise JLInputError(f"{output_path} appeared while embedding; not overwriting it") from None
    return counted["rows"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jl-embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a jl-train run folder, a .npz from JLEmbedding.save or a (k, d) .npy")
    parser.add_argument("input", help="vectors to embed: .npy (streamed), .csv (streamed), .npz or .pt")
    parser.add_argument("output", help="where to write the embedded vectors: .npy or .csv (must not exist)")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help=f"rows per chunk (default: as many as fit in {CHUNK_BUDGET // 2**20} MiB, or in a quarter of the "
        "memory this process may still use if less)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="dtype of a .npy output (default float32; computed in float64)",
    )
    parser.add_argument("--key", default=None, help="the array to read from a .npz (or a .pt dict) INPUT")
    parser.add_argument(
        "--header",
        choices=["auto", "true", "false"],
        default="auto",
        help="whether a .csv INPUT's first line is a header (auto: when it holds no number, "
        "or the column indices 0..d-1 / 1..d)",
    )
    args = parser.parse_args(argv)
    header = {"auto": "auto", "true": True, "false": False}[args.header]
    # a SIGTERM (kill, a scheduler) unwinds like Ctrl-C, so the output's temporary file is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # lazy: jl-embed loads only what the input file needs
    from jl_lightning.apps.estimator import load_embedding_matrix  # noqa: PLC0415

    matrix = None
    try:
        matrix = load_embedding_matrix(args.run_dir)
        rows = embed_file(matrix, args.input, args.output, args.chunk_rows, args.dtype, args.key, header)
    except JLInputError as err:
        print(f"jl-embed: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:  # the temporary was removed, OUTPUT not written
        print(
            f"jl-embed: error: out of memory embedding {args.input}; give a smaller --chunk-rows "
            f"(the matrix itself needs {matrix.nbytes / 2**20:.0f} MiB); {args.output} was not written"
            if matrix is not None
            else f"jl-embed: error: out of memory loading the matrix of {args.run_dir}",
            file=sys.stderr,
        )
        return 2
    except OSError as err:  # an unwritable folder, a full disk: the temporary was removed, OUTPUT not written
        output = Path(args.output)
        # the temporary beside OUTPUT is an implementation detail: name OUTPUT's folder instead
        where = (
            str(err.filename)
            if err.filename and Path(str(err.filename)).parent != output.parent
            else str(output.parent)
        )
        print(f"jl-embed: error: {where}: {err.strerror or err}; {args.output} was not written", file=sys.stderr)
        return 2
    print(f"[jl-embed] {rows} vectors of dimension {matrix.shape[1]} -> {matrix.shape[0]}: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
