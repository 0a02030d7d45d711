"""When to log: one predicate shared by the module and the callbacks.

Lightning hands logged values to the loggers at the end of the batch after
which ``count = global_step`` optimizer steps are done and
``count % trainer.log_every_n_steps == 0``. Calling ``self.log`` at exactly those
batches (and nowhere else: each call has a fixed cost) keeps every logged value
aligned with the step it is recorded under.
"""


def is_log_step(steps_done: int, every: int) -> bool:
    """True when ``steps_done`` optimizer steps (this batch's included) is a multiple of ``every``."""
    return steps_done > 0 and steps_done % every == 0
