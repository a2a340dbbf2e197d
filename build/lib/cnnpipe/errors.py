"""The one exception type for mistakes a user can fix: the CLI prints it as one line, no traceback."""


class UserError(Exception):
    """Wrong config, missing input, unavailable device...: the message says what is wrong and what to do."""
