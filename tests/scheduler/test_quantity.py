"""Kubernetes quantities, both ways (lora_controller.core.quantity, used by the scheduler's reasons)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lora_controller.core.quantity import format_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2Gi", 2 * 1024**3),
        ("1536Mi", 1536 * 1024**2),
        ("1.5Gi", 1536 * 1024**2),
        ("512", 512),
        ("1k", 1000),
        ("1500M", 1_500_000_000),
        ("1e3", 1000),
        ("100m", 1),  # a tenth of a byte rounds up to one
        (" 3Ti ", 3 * 1024**4),
        ("0", 0),
    ],
)
def test_parse(text: str, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "Gi", "2GB", "-1Gi", "1.2.3", "two"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (2 * 1024**3, "2Gi"),
        (1536 * 1024**2, "1536Mi"),
        (1024, "1Ki"),
        (0, "0"),
        (1000, "1000"),
        (33_587_384, "32.03Mi"),
        (2049, "2.00Ki"),
    ],
)
def test_format(amount: int, expected: str) -> None:
    assert format_bytes(amount) == expected


@given(st.integers(0, 1 << 62))
def test_exact_forms_round_trip(amount: int) -> None:
    text = format_bytes(amount)
    if "." not in text:
        assert parse_quantity(text) == amount
