"""The texts of secret vars' values in this run, and how text that did not come from sqlplan is
masked before it is shown or stored.

sqlplan's own text never holds a secret: a secret var's value is rendered as **** wherever
sqlplan renders it (values.Secret). What the server says can hold one (an error that echoes a
value, a row a query returns), so the server's text is masked here, at the source, before it
is stored or encoded: JSON keys, numbers and sqlplan's own words are never searched.

A secret shorter than MIN_LENGTH characters is refused when it is given (vars.gather): masking
one or two characters wherever the server's text holds them would mangle the text around them
and show where they occur.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MASK = "****"
MIN_LENGTH = 4
# PostgreSQL shows at most this many bytes of a value in a message ("Failing row contains"),
# then "...": a clipped secret is masked too.
_CLIPPED = "..."
# Error and notice fields that carry the server's prose, which may quote values.
_PROSE = frozenset("MDHWqstcdnF")


class _Registry:
    texts: tuple[str, ...] = ()  # longest first


def use(texts: Iterable[str]) -> None:
    """The secret texts of the run about to start (replacing any earlier run's)."""
    _Registry.texts = tuple(sorted({t for t in texts if t}, key=len, reverse=True))


def active() -> bool:
    return bool(_Registry.texts)


def mask(text: str) -> str:
    """`text` from the server with every secret, and every piece of one the server clipped,
    replaced by ****."""
    texts = _Registry.texts
    if not texts or not text:
        return text
    for secret in texts:
        if secret in text:
            text = text.replace(secret, MASK)
    if _CLIPPED in text:
        for secret in texts:
            for length in range(len(secret) - 1, MIN_LENGTH - 1, -1):
                piece = secret[:length] + _CLIPPED
                if piece in text:
                    text = text.replace(piece, MASK + _CLIPPED)
    return text


def mask_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """An ErrorResponse's or NoticeResponse's fields with their prose masked; codes, positions
    and severities as they are."""
    if not _Registry.texts:
        return dict(fields)
    return {k: mask(v) if k in _PROSE else v for k, v in fields.items()}


def texts() -> tuple[str, ...]:
    """The secret texts in force (to add others to them with use())."""
    return _Registry.texts
