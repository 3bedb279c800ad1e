"""The Bayesian rating: a prior of five 4-star jobs keeps a lucky newcomer below a consistent veteran."""

from __future__ import annotations

import pytest

from backend.ratings.services import shown_rating
from matching.curation import PRIOR_MEAN, bayesian_rating


def test_one_five_star_job_does_not_outrank_forty_jobs_averaging_4_8() -> None:
    newcomer = bayesian_rating(1, 5)
    veteran = bayesian_rating(40, 192)
    assert newcomer == pytest.approx(25 / 6)
    assert veteran == pytest.approx(212 / 45)
    assert newcomer < veteran
    assert (shown_rating(1, 5), shown_rating(40, 192)) == (4.17, 4.71)


def test_no_released_rating_is_no_rating() -> None:
    assert bayesian_rating(0, 0) is None
    assert shown_rating(0, 0) is None


def test_evidence_pulls_the_rating_from_the_prior_towards_the_average() -> None:
    ones = [bayesian_rating(n, n) for n in (1, 5, 50, 5000)]
    assert ones == sorted(ones, reverse=True)
    assert ones[0] < PRIOR_MEAN
    assert ones[-1] == pytest.approx(1, abs=0.01)
    assert bayesian_rating(3, 12) == PRIOR_MEAN  # ratings at the prior's mean leave it there
