"""The one exception type that reaches users as a one-line message."""


class AdvisorError(Exception):
    """A user-facing error: bad input, missing weights, offline, unknown name.

    The CLI prints ``str(err)`` on one line and exits non-zero; library callers catch it.
    Messages are one line and say what to do next.
    """
