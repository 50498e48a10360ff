"""The one exception type for a user's mistake.

Why a type of its own: the tools print a UserError as one line and exit 1, while any other exception is
a bug and keeps its traceback. Every UserError message names the file, flag or array at fault and says
what to do.
"""


class UserError(ValueError):
    """A model, data file, checkpoint, asset or setting the user gave that cannot be used as it is."""
