"""The geo-matching core: who may be offered a job and in which order. Never imports backend or litestar."""

from matching.candidates import (
    DEFAULT_SETTINGS,
    Candidate,
    Excluded,
    JobSpec,
    MatchResult,
    MatchSettings,
    MemberSnapshot,
    WaveSpec,
    eta_seconds,
    evaluate,
    exclusion_reasons,
    has_fresh_location,
    haversine_m,
    is_asap,
    origin,
    score,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "Candidate",
    "Excluded",
    "JobSpec",
    "MatchResult",
    "MatchSettings",
    "MemberSnapshot",
    "WaveSpec",
    "eta_seconds",
    "evaluate",
    "exclusion_reasons",
    "has_fresh_location",
    "haversine_m",
    "is_asap",
    "origin",
    "score",
]
