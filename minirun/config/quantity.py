"""Kubernetes resource quantities: "100m", "0.5", "128Mi", "1G", "1e3".

The grammar is apimachinery's (k8s.io/apimachinery/pkg/api/resource/quantity.go):

    <quantity>     ::= <sign><number><suffix>
    <number>       ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>       ::= <binarySI> | <decimalSI> | <decimalExponent>
    <binarySI>     ::= Ki | Mi | Gi | Ti | Pi | Ei            (powers of 1024)
    <decimalSI>    ::= n | u | m | "" | k | M | G | T | P | E  (powers of 1000)
    <decimalExponent> ::= e<signed integer> | E<signed integer>

So "1GB" (no such suffix), "0x10" (no hex), "1.1.M" (two points) and "Mi"
(no digits) are not quantities; "1K" is not either: kilo is a lower-case k.
Note "1E" is one exa (10^18), while "1E3" is 1000.

A value is kept exact, as a Fraction: 0.1 + 0.2 is 0.3 here, as in the
kubelet's arbitrary-precision inf.Dec. The two conversions the kubelet makes
both round *up*: ``MilliValue()`` for CPU (1u of CPU is 1 millicore) and
``Value()`` for bytes (0.5 bytes is 1 byte).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from minirun.errors import ConfigError

BINARY_SUFFIXES = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
                   "Pi": 1 << 50, "Ei": 1 << 60}
DECIMAL_SUFFIXES = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
                    "": Fraction(1), "k": Fraction(10**3), "M": Fraction(10**6),
                    "G": Fraction(10**9), "T": Fraction(10**12), "P": Fraction(10**15),
                    "E": Fraction(10**18)}

# sign, digits with at most one point (at least one digit), then everything else
_NUMBER = re.compile(r"([+-]?)([0-9]+\.?[0-9]*|\.[0-9]+)(.*)", re.DOTALL)
_EXPONENT = re.compile(r"[eE]([+-]?[0-9]+)")
HINT = "use a number with an optional suffix: 500m, 0.5, 128Mi, 1Gi, 1G, 1e3"


@dataclass(frozen=True)
class Quantity:
    """A parsed quantity: its exact value and the text it was written as."""
    value: Fraction
    text: str

    def __str__(self) -> str:
        return self.text


def parse_quantity(raw: object, where: str) -> Quantity:
    """Parse a quantity as the API server does; ``where`` names the field for errors.

    YAML and JSON numbers are accepted too (``cpu: 2``, ``cpu: 0.5``), as the
    kubelet's JSON decoder accepts them.
    """
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ConfigError(where, f"expected a quantity such as 500m or 128Mi, got "
                          f"{type(raw).__name__ if raw is not None else 'null'}")
    text = raw.strip() if isinstance(raw, str) else repr(raw)
    match = _NUMBER.fullmatch(text)
    if not text or match is None:
        raise ConfigError(where, f"{text!r} is not a quantity: {HINT}")
    sign, number, suffix = match.groups()
    value = Fraction(number if not number.endswith(".") else number[:-1])
    if suffix in BINARY_SUFFIXES:
        value *= BINARY_SUFFIXES[suffix]
    elif suffix in DECIMAL_SUFFIXES:
        value *= DECIMAL_SUFFIXES[suffix]
    elif _EXPONENT.fullmatch(suffix):
        exponent = int(suffix[1:])
        if abs(exponent) > 100:
            raise ConfigError(where, f"{text!r}: the exponent {exponent} is out of range")
        value *= Fraction(10) ** exponent
    else:
        raise ConfigError(where, f"{text!r} is not a quantity: unknown suffix {suffix!r} "
                          f"({_suffix_hint(suffix)}); {HINT}")
    return Quantity(-value if sign == "-" else value, text)


def parse_amount(raw: object, where: str) -> Quantity:
    """A quantity that measures an amount of a resource, so never below zero."""
    q = parse_quantity(raw, where)
    if q.value < 0:
        raise ConfigError(where, f"{q} is negative: an amount of a resource is 0 or more")
    return q


def _suffix_hint(suffix: str) -> str:
    if suffix.upper() in ("KB", "MB", "GB", "TB", "B"):
        return "bytes take no B: write 1G (10^9) or 1Gi (2^30)"
    if suffix == "K":
        return "kilo is a lower-case k"
    if suffix.lower().startswith("x") or "." in suffix:
        return "only decimal digits and a single point"
    return "known: " + ", ".join(s for s in (*BINARY_SUFFIXES, *DECIMAL_SUFFIXES) if s)


def to_millicores(q: Quantity) -> int:
    """MilliValue(): the value times 1000, rounded up ("0.0001" CPU is 1m)."""
    return math.ceil(q.value * 1000)


def to_bytes(q: Quantity) -> int:
    """Value(): the value rounded up to a whole number ("0.5" is 1)."""
    return math.ceil(q.value)


def format_quantity(value: int | Fraction, milli: bool = False) -> str:
    """An integer the way kubectl prints it: cpu in millicores ("1900m", "2"), bytes
    with the largest binary suffix that divides it exactly ("24684084Ki")."""
    if milli:
        value = Fraction(value) / 1000
        return str(value.numerator) if value.denominator == 1 else f"{int(value * 1000)}m"
    value = int(value)
    for suffix, size in reversed(BINARY_SUFFIXES.items()):
        if value and value % size == 0:
            return f"{value // size}{suffix}"
    return str(value)
