"""What a job pays: its pay terms (API.md, "Closing the work") and the one function that settles them.

Pure arithmetic on exact decimals, no I/O: `settle(terms, hours, expenses)` gives the payable's figures. The
labour is rounded half-up to the cent once, at the end; expenses are whole cents already, so the total is exact.

- fixed:   `amount`, whatever the hours.
- hourly:  `rate` × hours, the hours capped at `max_hours` (no cap without it).
- blended: `amount` covers the first `fixed_hours`, then `rate` × the hours beyond; all hours capped at `max_hours`.
- expenses: the approved claims, up to `max_expenses` in total (no cap without it); the excess is cut.
Each cap that bites is said in `notes`, in words an accounts clerk can check.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Literal, NamedTuple

import msgspec

from backend.closing.money import CENT, MAX_HOURS, MaybeHours, MaybeMoney, checked
from backend.errors import Invalid

PayType = Literal["fixed", "hourly", "blended"]

FIELDS = ("amount", "rate", "fixed_hours", "max_hours", "max_expenses")
NEEDS: dict[str, frozenset[str]] = {
    "fixed": frozenset({"amount"}),
    "hourly": frozenset({"rate"}),
    "blended": frozenset({"amount", "rate", "fixed_hours"}),
}
USES: dict[str, frozenset[str]] = {
    "fixed": frozenset({"amount", "max_expenses"}),
    "hourly": frozenset({"rate", "max_hours", "max_expenses"}),
    "blended": frozenset({"amount", "rate", "fixed_hours", "max_hours", "max_expenses"}),
}
"""The fields each type reads; any other one given, or a needed one missing, is refused (422 naming it)."""


class Pay(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A job's pay terms. `{amount, currency}` alone (the older shape) is `fixed`; so is a `type` left out (it is
    left out of answers too, which keeps the older shape as it was)."""

    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")]
    type: PayType = "fixed"
    amount: MaybeMoney = None
    rate: MaybeMoney = None
    """Per hour."""
    fixed_hours: MaybeHours = None
    max_hours: MaybeHours = None
    max_expenses: MaybeMoney = None


def check(terms: Pay, field: str = "pay") -> Pay:
    """The terms as given, or 422 naming the first field that the type does not use or needs and lacks, or a
    value that is not an amount of money (≥ 0, ≤ 2 decimals)."""
    given = {name for name in FIELDS if getattr(terms, name) is not None}
    for name in FIELDS:
        if name in given and name not in USES[terms.type]:
            raise Invalid(f"{field}.{name}", f"not used by pay of type {terms.type}")
        if name not in given and name in NEEDS[terms.type]:
            raise Invalid(f"{field}.{name}", f"required by pay of type {terms.type}")
    for name in ("amount", "rate", "max_expenses"):
        checked(getattr(terms, name), f"{field}.{name}")
    checked(terms.fixed_hours, f"{field}.fixed_hours", upper=MAX_HOURS)
    checked(terms.max_hours, f"{field}.max_hours", upper=MAX_HOURS, positive=True)
    if terms.fixed_hours is not None and terms.max_hours is not None and terms.max_hours < terms.fixed_hours:
        raise Invalid(f"{field}.max_hours", "must not be less than fixed_hours")
    return terms


class Settlement(NamedTuple):
    hours: Decimal
    """The hours paid: those given, capped at `max_hours`."""
    labour: Decimal
    expenses: Decimal
    total: Decimal
    notes: list[str]


def cents(value: Decimal) -> Decimal:
    """Half-up to the cent."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def settle(terms: Pay, hours: Decimal, expenses: list[Decimal] | tuple[Decimal, ...] = ()) -> Settlement:
    """The labour, expenses and total for `hours` of work and the approved expense claims (each in cents)."""
    notes: list[str] = []
    paid_hours = hours
    if terms.type != "fixed" and terms.max_hours is not None and hours > terms.max_hours:
        paid_hours = terms.max_hours
        notes.append(f"hours capped at max_hours {terms.max_hours} ({hours} worked)")
    if terms.type == "fixed":
        labour = terms.amount
    elif terms.type == "hourly":
        labour = terms.rate * paid_hours
    else:
        labour = terms.amount + terms.rate * max(paid_hours - terms.fixed_hours, Decimal(0))
    claimed = sum(expenses, Decimal(0))
    paid_expenses = claimed
    if terms.max_expenses is not None and claimed > terms.max_expenses:
        paid_expenses = terms.max_expenses
        notes.append(f"expenses cut to max_expenses {terms.max_expenses} ({claimed} claimed)")
    labour = cents(labour)
    # Hours and expenses are whole hundredths already (checked on the way in): quantizing only writes them so.
    paid_expenses = paid_expenses.quantize(CENT)
    return Settlement(
        hours=paid_hours, labour=labour, expenses=paid_expenses, total=labour + paid_expenses, notes=notes
    )
