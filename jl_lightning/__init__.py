"""jl_lightning: learn deterministic Johnson-Lindenstrauss embeddings by optimizing a
Gaussian solution sampler A ~ N(M, sigma^2) (Tsikouras, Caramanis, Tzamos, NeurIPS 2024).

The data flow, one module each:

    data/        -> points (synthetic, digits or loaded; validated, split, unit-normed in norms mode)
    sampling     -> reparameterized samples of A X^T (span trick when n <= d)
    variance     -> the sigma^2 parameterizations (raw clamped, log)
    sampler      -> the LightningModule holding M and sigma^2
    pair_loss    -> the pairs-mode loss (exact tiled scan, active set, smooth max)
    distortion   -> exact, chunked, float64 distortion of any linear map (norms or pairs)
    baselines    -> Gaussian, Rademacher, sparse, SRHT, PCA references and the JL bound
    srht_kernel  -> the SRHT as one compiled in-cache pass per row (numba, optional)
    log_schedule -> the one predicate deciding at which steps anything is logged
    callbacks/   -> variance monitor, switch to the deterministic mean, exact evaluation,
                    reference lines
    train        -> the Hydra entry point ``jl-train`` (run_guard: refuse occupied run folders)
    compare      -> ``jl-compare``: every reference against each other and a learned matrix
    export       -> embedding.npy and summary.json in the run folder
    embedding    -> JLEmbedding: fit / transform / save / load / from_run (sklearn-style)
    embed_cli    -> ``jl-embed``: stream a file of vectors through a learned matrix

Importing this package is cheap: Lightning is imported only by the modules that need it.
"""

__version__ = "0.1.0"

__all__ = ["JLEmbedding", "__version__"]


def __getattr__(name):
    if name == "JLEmbedding":
        from jl_lightning.embedding import JLEmbedding

        return JLEmbedding
    raise AttributeError(name)
