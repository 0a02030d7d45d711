"""``JLEmbedding``: a learned JL matrix as a small scikit-learn-style transformer.

    from jl_lightning import JLEmbedding

    emb = JLEmbedding(n_components=16, mode="pairs").fit(X)   # trains, as jl-train does
    Y = emb.transform(X_new)                                  # X_new @ components_.T
    emb.save("digits16.npz")                                  # numpy-readable
    emb = JLEmbedding.load("digits16.npz")                    # numpy only, no torch
    emb = JLEmbedding.from_run("outputs/runs/<date>/<time>_train")  # a jl-train run folder

``transform``, ``save``, ``load`` and ``from_run`` need numpy only. ``fit`` trains
with the same configuration as ``jl-train`` (conf/, composed with Hydra's compose API,
built and trained by ``lightning/fit.py``) and so imports torch and Lightning when called.

The saved .npz holds ``components`` (k x d, float64) and ``metadata``, a JSON
string: the training epsilon, the mode, the data fingerprint, the package version.
``np.load(path)["components"]`` is all another program needs.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from jl_lightning.core.plan import check_eps, smallest_k
from jl_lightning.errors import JLInputError, check_finite_matrix
from jl_lightning.io.run_folder import atomic_write
from jl_lightning.io.validation import check_fits, check_rows
from jl_lightning.sparse_rows import is_sparse
from jl_lightning.version import __version__

FORMAT = "jl_lightning.embedding/1"
# core/losses.MODES, named here too so that load() and transform() need numpy only
MODES = ("norms", "pairs")
OUTPUTS = ("default", "pandas")


def _global_transform_output() -> str:
    """scikit-learn's global ``transform_output`` setting where scikit-learn is installed."""
    try:
        # lazy: scikit-learn is optional
        from sklearn import get_config  # noqa: PLC0415
    except ImportError:  # pragma: no cover - scikit-learn is optional
        return "default"
    output = get_config().get("transform_output", "default")
    return output if output in OUTPUTS else "default"


try:  # scikit-learn's own class, so that its users' filters apply; a plain warning without it
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover - scikit-learn is optional

    class ConvergenceWarning(UserWarning):
        """A fit stopped before sigma^2 reached 0 (the switch to the deterministic mean)."""


class JLEmbedding:
    """A linear embedding R^d -> R^k learned by the Gaussian solution sampler.

    Parameters
    ----------
    n_components: k, the target dimension (``model.k``), or ``"auto"``: the smallest k whose
        learned training epsilon is at most ``eps`` on this data (a bisection over k with
        whole fits, bracketed by min(d, the Johnson-Lindenstrauss bound's k)). Default 30.
    mode: ``"norms"`` (preserve ||x||) or ``"pairs"`` (preserve all ||x_i - x_j||).
    max_steps: training steps (``trainer.max_steps``); None keeps the config's ``auto``: 5000,
        fewer where a step's product is large (wide points, large k; ``core.plan.default_steps``).
    random_state: the seed (``seed``): data split, sampling noise and initialization.
    experiment: an optional conf/experiment recipe (e.g. ``"digits_pairs"``) whose
        model and optimizer settings are used; the data always comes from ``fit(X)``.
    overrides: further jl-train overrides, e.g. ``("optimizer.lr=0.02",)``.
    compute_inverse_components: also keep ``inverse_components_``, the pseudo-inverse of
        ``components_`` (d, k), when fitted (scikit-learn's random projections have it);
        :meth:`inverse_transform` computes it when needed otherwise. Default False.
    eps: the target epsilon for ``n_components="auto"`` (a number in (0, 1)); None otherwise.
    dense_output: for scipy.sparse input, whether :meth:`transform` returns a dense array
        (True, the default) or a CSR matrix (False). Dense input always gives a dense array.

    Attributes (after ``fit``, ``load`` or ``from_run``)
    ----------------------------------------------------
    components_: (k, d) float64 matrix; ``transform(X) = X @ components_.T``.
    n_features_in_: d.
    training_distortion_: exact worst-case epsilon on the training data.
    converged_, sigma2_final_, switch_step_ (after ``fit``): whether sigma^2 reached 0 (the
        switch to the deterministic mean), its last value and the step of the switch; a fit
        that did not converge emits a ``ConvergenceWarning`` (scikit-learn's class).
    metadata_: dict with the mode, the data fingerprint, the package version, ...
    inverse_components_: (d, k) pseudo-inverse of ``components_``, with
        ``compute_inverse_components=True``.
    n_components_, jl_bound_k_, k_search_ (with ``n_components="auto"``): the k found, the
        JL bound's k for n points at ``eps`` (scikit-learn's johnson_lindenstrauss_min_dim),
        and every k tried, in order, with its training epsilon.

    Input may be dense (numpy, anything ``np.asarray`` reads) or scipy.sparse (CSR, CSC, COO)
    in :meth:`transform`; :meth:`set_output` gives pandas DataFrames with
    :meth:`get_feature_names_out`'s column names (``jlembedding0``, ...), as scikit-learn's
    transformers do.
    """

    def __init__(
        self,
        n_components: int = 30,
        mode: str = "norms",
        max_steps: int | None = None,
        random_state: int = 0,
        experiment: str | None = None,
        overrides: tuple = (),
        compute_inverse_components: bool = False,
        dense_output: bool = True,
        eps: float | None = None,
    ):
        self.n_components = n_components
        self.mode = mode
        self.max_steps = max_steps
        self.random_state = random_state
        self.experiment = experiment
        self.overrides = overrides
        self.compute_inverse_components = compute_inverse_components
        self.dense_output = dense_output
        self.eps = eps

    # ------------------------------------------------- scikit-learn protocol
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "JLEmbedding":
        for name, value in params.items():
            if name not in self._param_names():
                raise ValueError(f"invalid parameter {name!r} for JLEmbedding; valid: {self._param_names()}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        """scikit-learn >= 1.6 asks every pipeline step for its tags: a transformer that needs fitting
        and takes scipy.sparse input."""
        # lazy: scikit-learn is optional
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags  # noqa: PLC0415

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(),
            input_tags=InputTags(sparse=True),
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"JLEmbedding({args})"

    # --------------------------------------------------------------- fitting
    def _config_overrides(self, k: int) -> list[str]:
        overrides = [
            f"model.k={k}",
            f"model.mode={self.mode}",
            f"seed={self.random_state}",
            "logger=none",
            "~callbacks.model_checkpoint",
            "~callbacks.best_checkpoint",
            "~callbacks.progress_bar",
            "~callbacks.run_figures",
            "~callbacks.tensorboard_report",
            "~callbacks.graceful_stop",
            "baseline.draws=0",
        ]
        if self.experiment:
            overrides.insert(0, f"experiment={self.experiment}")
        if self.max_steps is not None:
            overrides.append(f"trainer.max_steps={self.max_steps}")
        return overrides + list(self.overrides)

    def fit(self, X, y=None) -> "JLEmbedding":
        """Learn the matrix on the rows of ``X`` (n, d), dense or scipy.sparse (kept sparse), with
        jl-train's configuration; with ``n_components="auto"``, the smallest k whose training
        epsilon is at most ``eps`` (:meth:`_search_k`).

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).standard_normal((30, 8))
        >>> emb = JLEmbedding(n_components=4, mode="pairs", max_steps=300).fit(X)  # doctest: +SKIP
        >>> emb.transform(X).shape  # doctest: +SKIP
        (30, 4)
        """
        X = check_rows(X, "fit(X)")
        if self.n_components == "auto":
            summary, matrix = self._search_k(X)
        else:
            if self.eps is not None:
                raise JLInputError(
                    f"eps={self.eps!r} applies to n_components='auto'; n_components={self.n_components!r}"
                )
            summary, matrix = self._train(X, self.n_components)
        self._set_fitted(
            matrix,
            {
                "training_distortion": summary["best_distortion"],
                "mode": summary["mode"],
                "data_fingerprint": summary["data_fingerprint"],
                "n_train": summary["n"],
                "steps": summary["steps"],
                "seed": summary["seed"],
                "version": __version__,
                "converged": bool(summary["converged"]),
                "sigma2_final": summary["sigma2_final"],
                "switch_step": summary.get("switch_step"),
            },
            where="fit()",
        )
        self.converged_ = bool(summary["converged"])
        self.sigma2_final_ = float(summary["sigma2_final"])
        self.switch_step_ = summary.get("switch_step")
        if not self.converged_:
            warnings.warn(
                f"JLEmbedding.fit did not converge: sigma^2 = {self.sigma2_final_:.3g} after "
                f"{summary['steps']} steps, the switch to the deterministic mean never happened; the "
                f"matrix's epsilon is {summary['best_distortion']:.4g}. Give more steps (max_steps).",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _search_k(self, X) -> tuple[dict, np.ndarray]:
        """``n_components="auto"``: the smallest k in [1, min(d, JL bound)] whose fit reaches a
        training epsilon <= ``eps``, by bisection (epsilon falls as k grows), each k a whole fit
        with this estimator's settings. Sets ``n_components_``, ``jl_bound_k_`` and
        ``k_search_`` (each k tried, in order, with its epsilon). If the largest k does not
        reach ``eps``, that k is kept and a ConvergenceWarning says so."""
        eps = check_eps(self.eps, "eps", "n_components")
        tried: dict[int, tuple[dict, np.ndarray]] = {}

        def epsilon_at(k: int) -> float:
            tried[k] = self._train(X, k)
            return float(tried[k][0]["best_distortion"])

        n, d = X.shape
        search = smallest_k(epsilon_at, n=n, d=d, eps=eps)
        self.jl_bound_k_ = search.jl_bound_k
        self.k_search_ = search.to_dict()["tried"]
        if not search.reached:
            warnings.warn(
                f"JLEmbedding(n_components='auto', eps={eps}): k={search.k} (min(d, JL bound)) gives epsilon "
                f"{tried[search.k][0]['best_distortion']:.4g} > eps; keeping k={search.k}",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.n_components_ = search.k
        return tried[search.k]

    def _train(self, X, k) -> tuple[dict, np.ndarray]:
        """One fit of k rows with jl-train's configuration: (summary, exported matrix)."""
        # lazy: JLEmbedding(...) is built without Hydra or Lightning; fit loads them
        from omegaconf import open_dict  # noqa: PLC0415

        from jl_lightning.apps.config import (  # noqa: PLC0415
            compose,
            composition_error_message,
            user_error_message,
        )

        # lazy: JLEmbedding(...) is built without Hydra or Lightning; fit loads them
        from jl_lightning.io.sources import ArrayPoints  # noqa: PLC0415
        from jl_lightning.lightning.callbacks.graceful_stop import RunStopped, stop_on_signals  # noqa: PLC0415
        from jl_lightning.lightning.fit import fit_from_config  # noqa: PLC0415

        try:
            cfg = compose(self._config_overrides(k))
            # SIGTERM and Ctrl-C end the fit where it is (a step, a tile of an exact pass) and
            # reach the caller as KeyboardInterrupt; the scratch folder goes, the estimator
            # keeps what it had before the call
            with stop_on_signals(), tempfile.TemporaryDirectory(prefix="jl_fit_") as scratch, open_dict(cfg):
                cfg.paths.output_dir = scratch
                cfg.data.val_fraction = 0.0  # fit() trains on all of X
                result = fit_from_config(cfg, source=ArrayPoints(X), interactive=False)
        except RunStopped as stop:
            raise KeyboardInterrupt(f"JLEmbedding.fit {stop}") from None
        except JLInputError:
            raise
        except Exception as err:  # Hydra wraps a constructor's JLInputError, names a bad override
            message = user_error_message(err) or composition_error_message(err, "train")
            if message is None:
                raise
            raise JLInputError(message) from None
        return result.summary, result.embedding

    def _set_fitted(self, matrix: np.ndarray, metadata: dict, where: str = "the embedding matrix") -> None:
        matrix = np.asarray(matrix)
        if not (np.issubdtype(matrix.dtype, np.number) and not np.iscomplexobj(matrix)):
            raise JLInputError(f"{where}: an embedding matrix must hold real numbers, got dtype {matrix.dtype}")
        mode = metadata.get("mode", "norms")
        if mode not in MODES:
            raise JLInputError(f"{where}: mode must be one of {list(MODES)}, got {mode!r}")
        matrix = matrix.astype(np.float64)
        if matrix.ndim != 2:
            raise JLInputError(f"{where}: an embedding matrix must be 2-D (k, d), got shape {matrix.shape}")
        check_finite_matrix(matrix, where)
        # fitted attributes only: the constructor's parameters are never overwritten
        # (load, from_run and from_matrix construct with the file's own k and mode)
        self.components_ = matrix
        self.n_features_in_ = matrix.shape[1]
        self.metadata_ = dict(metadata)
        self.training_distortion_ = metadata.get("training_distortion")
        if self.compute_inverse_components:
            self.inverse_components_ = np.linalg.pinv(matrix)
        elif hasattr(self, "inverse_components_"):  # a previous fit's
            del self.inverse_components_

    # ------------------------------------------------------------- applying
    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise JLInputError("this JLEmbedding is not fitted yet: call fit(X), load(path) or from_run(run_dir)")

    def transform(self, X):
        """``X @ components_.T`` for X of shape (m, d); one vector is ``X.reshape(1, -1)``, as in
        scikit-learn (a 1-D array is refused, as ``fit`` and ``jl-embed`` refuse it).

        X may be dense or scipy.sparse (never densified: one sparse product); the result is a
        dense array, or a CSR matrix for sparse X with ``dense_output=False``, or a pandas
        DataFrame after ``set_output(transform="pandas")``. float32 input gives float32 output
        (as scikit-learn's random projections do); any other numeric input gives float64.
        NaN or Inf input is refused, as ``fit`` refuses it.

        Examples
        --------
        >>> import numpy as np
        >>> emb = JLEmbedding.from_matrix(np.eye(2, 3))
        >>> emb.transform(np.array([[1.0, 2.0, 3.0]]))
        array([[1., 2.]])
        """
        self._check_fitted()
        original, sparse = X, is_sparse(X)
        X = check_rows(X, "transform(X)", dim=self.n_features_in_, expected_by="JLEmbedding")
        dtype = np.float32 if X.dtype == np.float32 else np.float64
        with np.errstate(over="ignore"):  # checked right below
            product = X.astype(np.float64, copy=False) @ self.components_.T
            Y = np.asarray(product).astype(dtype, copy=False)
        Y = check_fits(Y, "transform(X)")
        if sparse and not self.dense_output:
            return type(X)(Y)  # scipy.sparse, as the input
        return self._wrap_output(Y, original)

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    def inverse_transform(self, X):
        """Vectors of R^d whose images are the rows of ``X`` (m, k): ``X @ inverse_components_.T``
        with the pseudo-inverse of ``components_``, as scikit-learn's random projections do
        (the least-norm preimage; exact on the row space of ``components_``).

        Examples
        --------
        >>> import numpy as np
        >>> emb = JLEmbedding.from_matrix(np.eye(2, 3))
        >>> emb.inverse_transform(np.array([[1.0, 2.0]]))
        array([[1., 2., 0.]])
        """
        self._check_fitted()
        k = self.components_.shape[0]
        X = check_rows(X, "inverse_transform(X)", dim=k, expected_by="JLEmbedding.inverse_transform")
        inverse = getattr(self, "inverse_components_", None)
        if inverse is None:
            inverse = np.linalg.pinv(self.components_)
        dtype = np.float32 if X.dtype == np.float32 else np.float64
        with np.errstate(over="ignore"):
            Y = np.asarray(X.astype(np.float64, copy=False) @ inverse.T).astype(dtype, copy=False)
        return check_fits(Y, "inverse_transform(X)")

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the k output columns, ``jlembedding0`` ... (scikit-learn's rule for a
        transformer whose outputs are new features: the class name, lower case, and the index).

        Examples
        --------
        >>> import numpy as np
        >>> JLEmbedding.from_matrix(np.eye(2, 3)).get_feature_names_out().tolist()
        ['jlembedding0', 'jlembedding1']
        """
        self._check_fitted()
        if input_features is not None and len(input_features) != self.n_features_in_:
            raise JLInputError(
                f"input_features should have length equal to the number of features ({self.n_features_in_}), "
                f"got {len(input_features)}"
            )
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.components_.shape[0])], dtype=object)

    def set_output(self, *, transform: str | None = None) -> "JLEmbedding":
        """Choose what :meth:`transform` returns: ``"default"`` (numpy), ``"pandas"`` (a DataFrame
        with :meth:`get_feature_names_out` as columns, the input's index kept) or ``None``
        (unchanged); without a call, scikit-learn's global ``transform_output`` applies."""
        if transform is None:
            return self
        if transform not in OUTPUTS:
            raise JLInputError(f"set_output: transform must be one of {list(OUTPUTS)} or None, got {transform!r}")
        self._output = transform
        return self

    def _wrap_output(self, Y: np.ndarray, X):
        output = getattr(self, "_output", None)
        if output is None:
            output = _global_transform_output()
        if output == "default":
            return Y
        # lazy: pandas is only needed by callers who ask for DataFrames
        import pandas as pd  # noqa: PLC0415

        index = getattr(X, "index", None)
        return pd.DataFrame(Y, columns=self.get_feature_names_out(), index=index)

    # ------------------------------------------------------------ save/load
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``components`` and ``metadata`` to a new .npz file (never over an existing one)."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        if path.exists():
            raise FileExistsError(f"{path} exists; refusing to overwrite it")
        if not path.parent.is_dir():
            raise JLInputError(f"{path}: the folder {path.parent} does not exist")
        meta = dict(
            self.metadata_,
            format=FORMAT,
            n_components=int(self.components_.shape[0]),
            n_features_in=self.n_features_in_,
            random_state=self.random_state,
        )
        try:
            atomic_write(
                path, lambda handle: np.savez(handle, components=self.components_, metadata=np.array(json.dumps(meta)))
            )
        except OSError as err:  # unwritable folder, full disk: nothing is left at path
            raise JLInputError(f"{path}: could not write ({err.strerror or err})") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "JLEmbedding":
        """Read a file written by :meth:`save` (numpy only)."""
        path = Path(path)
        if not path.is_file():
            raise JLInputError(f"embedding file not found: {path}")
        try:
            archive = np.load(path, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise JLInputError(
                    f"{path}: a bare array, not a .npz saved by JLEmbedding.save (a (k, d) .npy "
                    "matrix: JLEmbedding.from_matrix(np.load(path)), or jl-embed reads it as it is)"
                )
            with archive:
                matrix = archive["components"]
                meta = json.loads(str(archive["metadata"])) if "metadata" in archive.files else {}
        except JLInputError:
            raise
        except KeyError:
            raise JLInputError(f"{path}: no 'components' array; not a saved JLEmbedding") from None
        except Exception as err:  # a corrupt archive: zipfile.BadZipFile, OSError, ValueError, JSON
            raise JLInputError(f"{path}: could not read as a saved JLEmbedding ({type(err).__name__}: {err})") from None
        if not isinstance(meta, dict):
            raise JLInputError(f"{path}: its metadata is not a JSON object; not a saved JLEmbedding")
        for name, axis in (("n_components", 0), ("n_features_in", 1)):
            if meta.get(name) is not None and matrix.ndim == 2 and meta[name] != matrix.shape[axis]:
                raise JLInputError(
                    f"{path}: its metadata says {name}={meta[name]}, but the components have "
                    f"shape {matrix.shape}; the file is inconsistent"
                )
        emb = cls(
            n_components=int(matrix.shape[0]) if matrix.ndim else 1,
            mode=meta.get("mode", "norms"),
            random_state=meta.get("random_state", 0),
        )
        emb._set_fitted(matrix, meta, where=str(path))
        return emb

    @classmethod
    def from_matrix(cls, matrix, mode: str = "norms") -> "JLEmbedding":
        """A fitted embedding of a given (k, d) matrix (a bare .npy matrix, another method's map)."""
        matrix = np.asarray(matrix)
        emb = cls(n_components=int(matrix.shape[0]) if matrix.ndim == 2 else 1, mode=mode)
        emb._set_fitted(matrix, {"mode": mode}, where="from_matrix()")
        return emb

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike) -> "JLEmbedding":
        """The matrix a finished ``jl-train`` run exported (embedding.npy + summary.json)."""
        run_dir = Path(run_dir)
        matrix_path, summary_path = run_dir / "embedding.npy", run_dir / "summary.json"
        if not summary_path.is_file() or not matrix_path.is_file():
            raise JLInputError(
                f"{run_dir} is not a finished jl-train run folder (expected embedding.npy and summary.json)"
            )
        try:
            summary = json.loads(summary_path.read_text())
            matrix = np.load(matrix_path, allow_pickle=False)
        except Exception as err:
            raise JLInputError(
                f"{run_dir}: could not read its summary.json and embedding.npy ({type(err).__name__}: {err})"
            ) from None
        emb = cls(
            n_components=int(matrix.shape[0]), mode=summary.get("mode", "norms"), random_state=summary.get("seed", 0)
        )
        emb._set_fitted(
            matrix,
            {
                "training_distortion": summary.get("best_distortion"),
                "mode": summary.get("mode", "norms"),
                "data_fingerprint": summary.get("data_fingerprint"),
                "n_train": summary.get("n"),
                "steps": summary.get("steps"),
                "seed": summary.get("seed"),
                "version": summary.get("jl_lightning_version"),
                "run_dir": str(run_dir),
            },
            where=str(matrix_path),
        )
        return emb


def load_embedding_matrix(path: str | os.PathLike) -> np.ndarray:
    """The (k, d) matrix of a run folder, a saved .npz, or a bare .npy matrix."""
    path = Path(path)
    if path.is_dir():
        return JLEmbedding.from_run(path).components_
    if path.suffix == ".npz":
        return JLEmbedding.load(path).components_
    if path.suffix == ".npy" and path.is_file():
        try:
            matrix = np.load(path, allow_pickle=False)
        except Exception as err:
            raise JLInputError(f"{path}: could not read as a .npy matrix ({type(err).__name__}: {err})") from None
        if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
            raise JLInputError(
                f"{path}: an embedding matrix must be a numeric 2-D (k, d) array, "
                f"got shape {matrix.shape} and dtype {matrix.dtype}"
            )
        return check_finite_matrix(matrix.astype(np.float64), str(path))
    raise JLInputError(f"{path}: expected a jl-train run folder, a .npz saved by JLEmbedding or a .npy matrix")
