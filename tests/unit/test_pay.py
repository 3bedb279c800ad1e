"""The pay function: fixed, hourly with its cap, blended, expenses up to max_expenses, rounded half-up to the cent
once — by examples, and by hypothesis against a plain reference in integer cents and fractions."""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backend.closing.pay import Pay, check, settle
from backend.errors import Invalid


def terms(**fields) -> Pay:
    return msgspec.convert({"currency": "EUR", **fields}, Pay)


def test_fixed_pays_the_amount_whatever_the_hours() -> None:
    s = settle(terms(amount=120), D("7.5"))
    assert (s.labour, s.expenses, s.total, s.notes) == (D("120.00"), 0, D("120.00"), [])


def test_hourly_is_rate_times_hours_capped_at_max_hours() -> None:
    assert settle(terms(type="hourly", rate=D("45.50")), D("2.25")).labour == D("102.38")  # 102.375 half-up
    capped = settle(terms(type="hourly", rate=40, max_hours=8), D("9.5"))
    assert (capped.hours, capped.labour) == (8, D("320.00"))
    assert capped.notes == ["hours capped at max_hours 8 (9.5 worked)"]


def test_blended_covers_fixed_hours_with_the_amount_then_the_rate() -> None:
    blended = terms(type="blended", amount=100, fixed_hours=2, rate=30, max_hours=6)
    assert settle(blended, D("1.5")).labour == D("100.00")
    assert settle(blended, D("3.25")).labour == D("137.50")
    assert settle(blended, D("10")).labour == D("220.00")


def test_expenses_are_paid_up_to_max_expenses_and_the_cut_is_said() -> None:
    s = settle(terms(amount=100, max_expenses=50), D(1), [D("30.00"), D("25.55")])
    assert (s.expenses, s.total) == (D("50"), D("150.00"))
    assert s.notes == ["expenses cut to max_expenses 50 (55.55 claimed)"]
    assert settle(terms(amount=100), D(1), [D("30.00"), D("25.55")]).total == D("155.55")


def test_rounding_is_half_up_once_at_the_end() -> None:
    # 3 × 0.335 = 1.005 → 1.01 (rounding each hour first would give 3 × 0.34 = 1.02, or 1.00 with banker's rounding).
    assert settle(terms(type="hourly", rate=D("0.335")), D(3)).labour == D("1.01")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "fixed", "amount": 10, "rate": 5}, "pay.rate"),
        ({"type": "fixed"}, "pay.amount"),
        ({"type": "hourly", "amount": 10, "rate": 5}, "pay.amount"),
        ({"type": "hourly"}, "pay.rate"),
        ({"type": "hourly", "rate": 5, "fixed_hours": 2}, "pay.fixed_hours"),
        ({"type": "blended", "amount": 10, "rate": 5}, "pay.fixed_hours"),
        ({"type": "blended", "amount": 10, "fixed_hours": 2}, "pay.rate"),
        ({"type": "blended", "amount": 10, "rate": 5, "fixed_hours": 4, "max_hours": 3}, "pay.max_hours"),
        ({"amount": D("10.001")}, "pay.amount"),
        ({"type": "hourly", "rate": D("-1")}, "pay.rate"),
        ({"amount": 10, "max_expenses": D("0.005")}, "pay.max_expenses"),
        ({"type": "hourly", "rate": 5, "max_hours": 0}, "pay.max_hours"),
    ],
)
def test_terms_that_do_not_fit_their_type_are_refused_naming_the_field(fields: dict, field: str) -> None:
    with pytest.raises(Invalid) as refused:
        check(terms(**fields))
    assert refused.value.field == field


def test_the_older_amount_and_currency_means_fixed() -> None:
    assert check(terms(amount=120.0)).type == "fixed"


# --- properties against a plain reference ---------------------------------------------------------------

cents_st = st.integers(min_value=0, max_value=10_000_000)  # up to 100,000.00
hours_st = st.integers(min_value=0, max_value=100_000)  # hundredths of an hour, up to 1,000 h


def reference(kind, amount, rate, fixed_hours, max_hours, max_expenses, hours, expenses) -> tuple[int, int, int]:
    """(labour, expenses, total) in cents, from integers (cents, hundredths of hours) and fractions only."""
    h = Fraction(hours, 100)
    if max_hours is not None and kind != "fixed":
        h = min(h, Fraction(max_hours, 100))
    if kind == "fixed":
        labour = Fraction(amount)
    elif kind == "hourly":
        labour = Fraction(rate) * h
    else:
        labour = Fraction(amount) + Fraction(rate) * max(h - Fraction(fixed_hours, 100), 0)
    labour_cents = int(labour + Fraction(1, 2))  # half-up, labour ≥ 0
    claimed = sum(expenses)
    paid = claimed if max_expenses is None else min(claimed, max_expenses)
    return labour_cents, paid, labour_cents + paid


def money(cents: int | None) -> D | None:
    return None if cents is None else D(cents) / 100


@given(
    kind=st.sampled_from(["fixed", "hourly", "blended"]),
    amount=cents_st,
    rate=cents_st,
    fixed_hours=hours_st,
    max_hours=st.none() | st.integers(min_value=1, max_value=100_000),
    max_expenses=st.none() | cents_st,
    hours=hours_st,
    expenses=st.lists(cents_st, max_size=6),
)
@example(kind="hourly", amount=0, rate=33, fixed_hours=0, max_hours=None, max_expenses=None, hours=150, expenses=[])
def test_settle_agrees_with_the_reference(kind, amount, rate, fixed_hours, max_hours, max_expenses, hours, expenses):
    if kind == "blended" and max_hours is not None and max_hours < fixed_hours:
        max_hours = fixed_hours or None
    fields = {"type": kind, "max_expenses": money(max_expenses)}
    if kind in ("fixed", "blended"):
        fields["amount"] = money(amount)
    if kind in ("hourly", "blended"):
        fields["rate"] = money(rate)
        fields["max_hours"] = money(max_hours)
    if kind == "blended":
        fields["fixed_hours"] = money(fixed_hours)
    pay = check(Pay(currency="EUR", **fields))
    got = settle(pay, D(hours) / 100, [D(c) / 100 for c in expenses])
    labour, paid, total = reference(kind, amount, rate, fixed_hours, max_hours, max_expenses, hours, expenses)
    assert (got.labour, got.expenses, got.total) == (D(labour) / 100, D(paid) / 100, D(total) / 100)
    assert got.labour == got.labour.quantize(D("0.01"))
    assert got.total == got.labour + got.expenses
