"""The package's version, on the ground floor with the errors: summary.json and the
estimator's metadata record it, and the package root hands it on."""

__version__ = "0.1.0"  # pyproject.toml's [project] version (tested)
