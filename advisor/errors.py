"""The one exception type that reaches users as a one-line message."""


class AdvisorError(Exception):
    """A user-facing error: bad input, missing weights, offline, unknown name.

    The CLI prints ``str(err)`` on one line and exits non-zero; library callers catch it.
    Messages are one line and say what to do next.
    """


def one_line(text: str) -> str:
    """``text`` with every control character escaped (``\\n`` -> ``\\\\n``), so that a message
    quoting a hostile file name still prints as exactly one line."""
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)
