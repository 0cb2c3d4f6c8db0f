class UserError(Exception):
    """A problem the user can fix (bad path, column, setting): reported as one line, exit code 2."""


def excerpt(value, limit=40):
    """A short, printable excerpt of `value` for an error line: control characters, NULs and the
    lone surrogates of undecodable bytes escaped (as repr does), cut to about `limit` characters."""
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
    cut = len(text) > limit
    shown = repr(text[:limit])[1:-1]
    return shown + ("…" if cut else "")


def listing(names, limit=12):
    """'a, b, c' of the first `limit` names, each an excerpt: a header of binary data stays short."""
    names = list(names)
    shown = ", ".join(excerpt(n, 30) for n in names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def printable(message):
    """The message as one printable line: any control character or lone surrogate escaped."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(message))
