"""Kubernetes quantities: apimachinery's grammar, exact values, and the kubelet's rounding."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from minirun.config.quantity import format_quantity, parse_quantity, to_bytes, to_millicores
from minirun.errors import ConfigError

WHERE = "spec.containers[0].resources.limits.memory"


@pytest.mark.parametrize("text, expected", [
    ("100m", Fraction(1, 10)),
    ("0.5", Fraction(1, 2)),
    ("1", Fraction(1)),
    ("128Mi", Fraction(128 * 1024 * 1024)),
    ("1G", Fraction(1_000_000_000)),
    ("1e3", Fraction(1000)),
    ("1E3", Fraction(1000)),
    ("129e6", Fraction(129_000_000)),
    ("1e-3", Fraction(1, 1000)),
    ("1Ki", Fraction(1024)),
    ("1k", Fraction(1000)),
    ("5n", Fraction(5, 1_000_000_000)),
    ("3u", Fraction(3, 1_000_000)),
    ("1.5Gi", Fraction(3 * 512 * 1024 * 1024)),
    (".5", Fraction(1, 2)),
    ("1.", Fraction(1)),
    ("+2", Fraction(2)),
    ("-2", Fraction(-2)),
    ("0", Fraction(0)),
    ("1E", Fraction(10**18)),       # E alone is exa, not an exponent
    ("1Ei", Fraction(2**60)),
    (" 64Mi ", Fraction(64 * 2**20)),
    (2, Fraction(2)),               # YAML numbers
    (0.25, Fraction(1, 4)),
])
def test_valid_quantities_parse_to_exact_values(text, expected):
    q = parse_quantity(text, WHERE)
    assert q.value == expected


def test_sums_stay_exact():
    total = parse_quantity("0.1", WHERE).value + parse_quantity("0.2", WHERE).value
    assert total == Fraction(3, 10)


@pytest.mark.parametrize("text", ["1GB", "0x10", "1.1.M", "", "Mi", "1K", "1e", "1e3.5",
                                  "abc", ".", "1 Mi", "--1", "1mi", "1MB", "Gi1", "1e+"])
def test_invalid_quantities_name_the_field(text):
    with pytest.raises(ConfigError) as err:
        parse_quantity(text, WHERE)
    assert err.value.where == WHERE
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", [None, True, [1], {"a": 1}])
def test_non_scalars_are_refused(value):
    with pytest.raises(ConfigError, match=re.escape(WHERE)):
        parse_quantity(value, WHERE)


def test_bytes_with_a_b_get_a_hint():
    with pytest.raises(ConfigError, match="no B"):
        parse_quantity("1GB", WHERE)


@pytest.mark.parametrize("text, milli", [("100m", 100), ("1", 1000), ("1.5", 1500),
                                         ("0.0001", 1), ("1u", 1), ("2500m", 2500),
                                         ("1e-3", 1)])
def test_millicores_round_up_like_milli_value(text, milli):
    assert to_millicores(parse_quantity(text, WHERE)) == milli


@pytest.mark.parametrize("text, value", [("0.5", 1), ("1.5Ki", 1536), ("1m", 1),
                                         ("128Mi", 134217728), ("1e3", 1000)])
def test_bytes_round_up_like_value(text, value):
    assert to_bytes(parse_quantity(text, WHERE)) == value


@pytest.mark.parametrize("value, milli, text", [
    (2000, True, "2"), (1900, True, "1900m"), (100, True, "100m"),
    (24684084 * 1024, False, "24684084Ki"), (128 << 20, False, "128Mi"),
    (1000, False, "1000"), (0, False, "0"), (3 << 30, False, "3Gi"),
])
def test_format_like_kubectl(value, milli, text):
    assert format_quantity(value, milli=milli) == text
