"""The Lightning layer: the base module and its two samplers, the DataModule, the callbacks,
and :func:`fit.fit_from_config`, which builds them from a composed config and trains."""
