"""Byte quantities in the Kubernetes style, both ways.

Users write adapter memory as `2Gi` in a CR and read it back in status reasons ("needs 2Gi, largest
free capacity on an eligible pod is 1536Mi"). One parser and one formatter keep the two consistent.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$")
# Largest unit first, so the formatter picks the biggest one that reads well.
_UNITS_DESC = sorted(_BINARY.items(), key=lambda item: -item[1])


def parse_quantity(text: str) -> int:
    """Parse a Kubernetes quantity (`2Gi`, `1500M`, `1e9`, `512`) into whole bytes, rounding up.

    Raises ValueError for anything that is not a quantity or is negative.
    """
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid numbers
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from exc
    if exponent is not None:
        value = value.scaleb(int(exponent[1:]))
    elif suffix == "m":
        value = value / 1000
    elif suffix in _BINARY:
        value = value * _BINARY[suffix]
    elif suffix is not None:
        value = value * _DECIMAL[suffix]
    if value < 0:
        raise ValueError(f"negative quantity: {text!r}")
    whole = int(value)
    return whole + 1 if value > whole else whole


@lru_cache(maxsize=4096)
def format_bytes(amount: int) -> str:
    """Format a byte count for people: exact binary units when they divide (`2Gi`, `1536Mi`),
    else the largest unit with two decimals (`32.03Mi`, `2.00Ki` for 2049)."""
    if amount < 0:
        return "-" + format_bytes(-amount)
    for unit, size in _UNITS_DESC:
        if amount >= size and amount % size == 0:
            return f"{amount // size}{unit}"
    if amount < 1024:
        return str(amount)
    for unit, size in _UNITS_DESC:
        if amount >= size:
            return f"{amount / size:.2f}{unit}"
    return str(amount)  # pragma: no cover - amount >= 1024 always meets Ki
