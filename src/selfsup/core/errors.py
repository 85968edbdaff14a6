"""The one exception type users see: a bad value, said in one line."""


class UserError(Exception):
    """Bad input from the user (a value, a path, a params file). The CLI prints it as one line."""
