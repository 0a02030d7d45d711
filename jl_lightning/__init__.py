"""jl_lightning: learn deterministic Johnson-Lindenstrauss embeddings by optimizing a
Gaussian solution sampler A ~ N(M, sigma^2) (Tsikouras, Caramanis, Tzamos, NeurIPS 2024).

Layers, each importing only the ones before it (docs/design.md has the map):

    core/       the math, no Lightning: sampling, variance, the losses, pair geometry,
                the exact objective, the second-order steppers, Theorem 1's construction
    metrics/    exact tiled distortion of any linear map: ``evaluate``
    baselines/  random maps (Gaussian, sparse, SRHT), PCA, the JL bound
    io/         data sources, loading and validation; the run folder
    lightning/  the base module and its samplers, the DataModule, the callbacks, fit
    apps/       jl-train, jl-compare, jl-embed, JLEmbedding, config composition

Importing this package is cheap: Lightning is imported only by the modules that need it.
``from jl_lightning import JLEmbedding`` is the public shortcut to ``apps.estimator``: this
file is the package's face, above every layer, and nothing inside the package imports it.
"""

from jl_lightning.version import __version__

__all__ = ["JLEmbedding", "__version__"]


def __getattr__(name):
    if name == "JLEmbedding":
        # lazy, so that `import jl_lightning` loads neither torch nor Lightning
        from jl_lightning.apps.estimator import JLEmbedding  # noqa: PLC0415

        return JLEmbedding
    raise AttributeError(name)
