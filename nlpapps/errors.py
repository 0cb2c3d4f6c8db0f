class UserError(Exception):
    """A problem the user can fix (bad path, column, setting): reported as one line, exit code 2."""
