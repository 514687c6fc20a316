"""One exception type for mistakes a user can fix.

The CLI prints these as a single line (no traceback) because they are about the input, not about a bug.
"""


class TITNError(Exception):
    """Bad input or environment; the message says what is wrong and how to fix it."""
