"""The applications: config composition, ``jl-train``, ``jl-compare``, ``jl-embed`` and
``JLEmbedding``. Nothing outside this package imports it."""
