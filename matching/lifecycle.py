"""A job's lifecycle: its statuses, the actions that move it, and from where each action may start.

This is the one table of allowed transitions. Every state change of a job goes through it (the backend's
`backend.jobs.lifecycle.move`), and the SQL that needs a set of statuses (matching's busy check, presence's
"has an active job", the partial indexes of the migrations) is written from the sets below.

    open ──dispatch──▶ offering ──accept/assign──▶ assigned ──en_route──▶ en_route ──check_in──▶ on_site
      │                  │  ▲                         │                      │                      │
      │                  │  └────────back_out─────────┴──────────────────────┘                  complete
      └──exhaust──▶ unfilled ◀──exhaust── (no wave left)                                          ▼
                                                                                               completed ──approve──▶ approved
                                                                                     mark_incomplete │ ▲ complete
                                                                                                     ▼ │
                                                                                               incomplete ──check_in──▶ on_site
    incomplete: the organisation sent the work back; the technician fixes what is missing (tasks, photos,
    expenses; check-in again for a return visit) and completes again.
    cancel: from any status before completion.
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    OPEN = "open"
    OFFERING = "offering"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    UNFILLED = "unfilled"
    APPROVED = "approved"
    INCOMPLETE = "incomplete"


S = JobStatus

ACTIVE: frozenset[JobStatus] = frozenset({S.ASSIGNED, S.EN_ROUTE, S.ON_SITE})
"""A technician holds the job: it keeps them busy for its window, and their pings are accepted off duty."""
LOCATED: frozenset[JobStatus] = frozenset({S.EN_ROUTE, S.ON_SITE})
"""The customer sees the technician's position (never before, never after)."""
DONE: frozenset[JobStatus] = frozenset({S.COMPLETED, S.INCOMPLETE, S.APPROVED})
"""The work was completed at least once: it can be rated, it counts as work done (engagement), and the customer's
visit is over. `incomplete` is not ACTIVE: the job's window is behind it and the technician is neither busy with it
nor tracked for it until they check in again for a return visit (on_site, which is ACTIVE)."""
CLOSED: frozenset[JobStatus] = DONE | {S.CANCELLED}
"""No longer cancellable; the customer's tracking link closes 24 h later."""
WORKING: frozenset[JobStatus] = frozenset({S.EN_ROUTE, S.ON_SITE, S.INCOMPLETE})
"""The assigned technician may record the job's tasks."""


class Action(enum.StrEnum):
    DISPATCH = "dispatch"
    OFFER = "offer"
    """A wave starts (the first, or the next one after a wave ended or a technician backed out)."""
    EXHAUST = "exhaust"
    """No wave is left with anyone to offer the job to."""
    ACCEPT = "accept"
    ASSIGN = "assign"
    EN_ROUTE = "en_route"
    CHECK_IN = "check_in"
    COMPLETE = "complete"
    BACK_OUT = "back_out"
    CANCEL = "cancel"
    APPROVE = "approve"
    MARK_INCOMPLETE = "mark_incomplete"


class Transition:
    __slots__ = ("sources", "target", "verb")

    def __init__(self, sources: set[JobStatus], target: JobStatus, verb: str) -> None:
        self.sources = frozenset(sources)
        self.target = target
        self.verb = verb
        """How the refusal reads: "a job that is completed cannot be {verb}"."""


TRANSITIONS: dict[Action, Transition] = {
    Action.DISPATCH: Transition({S.OPEN, S.UNFILLED}, S.OFFERING, "dispatched"),
    Action.OFFER: Transition({S.OPEN, S.OFFERING, S.UNFILLED}, S.OFFERING, "offered"),
    Action.EXHAUST: Transition({S.OPEN, S.OFFERING, S.UNFILLED}, S.UNFILLED, "left unfilled"),
    Action.ACCEPT: Transition({S.OFFERING}, S.ASSIGNED, "accepted"),
    Action.ASSIGN: Transition({S.OPEN, S.OFFERING, S.UNFILLED}, S.ASSIGNED, "assigned"),
    Action.EN_ROUTE: Transition({S.ASSIGNED}, S.EN_ROUTE, "set en route"),
    # A technician who forgot to tap "en route" has still arrived; one sent back may come again (a new visit).
    Action.CHECK_IN: Transition({S.ASSIGNED, S.EN_ROUTE, S.INCOMPLETE}, S.ON_SITE, "checked in to"),
    # From incomplete without a new visit: what was missing (a photo, a task) could be fixed from afar.
    Action.COMPLETE: Transition({S.ON_SITE, S.INCOMPLETE}, S.COMPLETED, "completed"),
    Action.BACK_OUT: Transition({S.ASSIGNED, S.EN_ROUTE}, S.OFFERING, "backed out of"),
    Action.CANCEL: Transition(set(JobStatus) - CLOSED, S.CANCELLED, "cancelled"),
    Action.APPROVE: Transition({S.COMPLETED}, S.APPROVED, "approved"),
    Action.MARK_INCOMPLETE: Transition({S.COMPLETED}, S.INCOMPLETE, "marked incomplete"),
}


def allows(current: str, action: Action) -> bool:
    return current in TRANSITIONS[action].sources


def sql_list(statuses: frozenset[JobStatus]) -> str:
    """`'a', 'b'` for an SQL `IN (...)`: literal, so that a partial index on the same set can be used."""
    return ", ".join(f"'{s}'" for s in sorted(statuses))
