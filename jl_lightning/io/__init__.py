"""Input and output: data sources and file loading, validation, and the run folder
(results, the overwrite guard, the sweep summary)."""
