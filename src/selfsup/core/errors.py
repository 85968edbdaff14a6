"""The exception types users see: a bad value, said in one line; a training that diverged."""


class UserError(Exception):
    """Bad input from the user (a value, a path, a params file). The CLI prints it as one line."""


class Diverged(UserError):
    """A training run whose loss diverged (:func:`selfsup.train.loop.fit` decides): nothing of it is kept.
    ``replica`` is the index of the diverged replica of a stacked run (else ``None``); callers put the run
    or cell in front of the message with :meth:`within`."""

    def __init__(self, message: str, replica: int | None = None):
        super().__init__(message)
        self.replica = replica

    def within(self, where: str) -> "Diverged":
        return Diverged(f"{where}: {self}", self.replica)
