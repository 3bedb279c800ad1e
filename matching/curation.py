"""Curation figures the ranking uses: a member's Bayesian rating and their reliability, for one organisation.

Rating
    The Bayesian average of the organisation's released ratings of the technician (1..5 stars):
    (PRIOR_WEIGHT_RATING × PRIOR_MEAN + Σ stars) / (PRIOR_WEIGHT_RATING + n), null with none, so that one
    5-star job (25/6 ≈ 4.17) does not outrank forty jobs averaging 4.8 (212/45 ≈ 4.71). 4.0 is a little
    below what a kept pool member typically earns; 5 jobs is how much evidence it takes to move well away.

Reliability
    How well a technician has kept their word to one organisation, from counted events. The database
    layer keeps, per pool member, counters bumped in the same transaction as the event they count (an
    offer answered or expired, an assignment, a back-out, a check-in, a completion); `reliability` turns
    them into the rates shown on the technician and the 0..1 score the ranking uses.

Reliability rates (null while their denominator is 0)
    on_time_rate     check-ins made by the end of the job's window / check-ins
    completion_rate  completions / (completions + back-outs): of the jobs a technician gave an outcome
                     to, the share they finished (jobs still in progress, or cancelled by the
                     organisation, count neither way)
    backout_rate     back-outs / assignments
    acceptance_rate  offers accepted / offers that ended by an answer or by expiring (offers withdrawn
                     because someone else won never count; a dispatcher's direct assignment is no offer)

Reliability score
    0.35 × on time + 0.25 × completion + 0.25 × (1 − back-out) + 0.15 × acceptance, each rate first pulled
    towards 0.5 by PRIOR_WEIGHT imaginary observations: (observed + PRIOR_WEIGHT × 0.5) / (n + PRIOR_WEIGHT),
    so that one late arrival in a technician's first job does not sink them, nor one good job crown them.
    With nothing counted at all the score is null, which the ranking treats as 0.5 (matching.candidates).
"""

from __future__ import annotations

import msgspec

PRIOR_MEAN = 4.0
PRIOR_WEIGHT_RATING = 5
PRIOR = 0.5
PRIOR_WEIGHT = 2
WEIGHTS = {"on_time": 0.35, "completion": 0.25, "no_backout": 0.25, "acceptance": 0.15}
# The counters kept per pool member (columns of pool_memberships), as `reliability_score` takes them.
COUNTERS = (
    "offers_answered",
    "offers_accepted",
    "assignments",
    "backouts",
    "check_ins",
    "on_time_check_ins",
    "completions",
)


def bayesian_rating(count: int, total: int) -> float | None:
    """The Bayesian average of `count` released ratings adding up to `total` stars; None without any."""
    if count <= 0:
        return None
    return (PRIOR_WEIGHT_RATING * PRIOR_MEAN + total) / (PRIOR_WEIGHT_RATING + count)


class Reliability(msgspec.Struct, frozen=True, kw_only=True):
    score: float | None
    on_time_rate: float | None
    completion_rate: float | None
    backout_rate: float | None
    acceptance_rate: float | None
    jobs: int  # completed


def _rate(hits: int, out_of: int) -> float | None:
    return round(hits / out_of, 3) if out_of else None


def _smoothed(hits: int, out_of: int) -> float:
    return (hits + PRIOR_WEIGHT * PRIOR) / (out_of + PRIOR_WEIGHT)


def reliability_score(
    *,
    offers_answered: int,
    offers_accepted: int,
    assignments: int,
    backouts: int,
    check_ins: int,
    on_time_check_ins: int,
    completions: int,
) -> float | None:
    """The 0..1 score the ranking uses (see the module docstring); None with nothing counted."""
    if not (offers_answered or assignments or check_ins or completions or backouts):
        return None
    return round(
        WEIGHTS["on_time"] * _smoothed(on_time_check_ins, check_ins)
        + WEIGHTS["completion"] * _smoothed(completions, completions + backouts)
        + WEIGHTS["no_backout"] * (1 - _smoothed(backouts, assignments))
        + WEIGHTS["acceptance"] * _smoothed(offers_accepted, offers_answered),
        4,
    )


def reliability(**counters: int) -> Reliability:
    """The rates and the score from a member's counters (the keyword arguments of `reliability_score`)."""
    c = counters
    return Reliability(
        score=reliability_score(**counters),
        on_time_rate=_rate(c["on_time_check_ins"], c["check_ins"]),
        completion_rate=_rate(c["completions"], c["completions"] + c["backouts"]),
        backout_rate=_rate(c["backouts"], c["assignments"]),
        acceptance_rate=_rate(c["offers_accepted"], c["offers_answered"]),
        jobs=c["completions"],
    )
