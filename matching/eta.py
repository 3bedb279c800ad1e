"""The ETA model: how long a technician takes to reach a site when no road router is asked.

One formula for ranking candidates and for the customer's tracking link (API.md: "great-circle distance × 1.3
at the technician's recent speed when moving, else 30 km/h"). Roads are longer than the great circle, so the
distance is multiplied by `detour_factor`; the speed is the technician's recent speed while they move (at or
above `moving_speed_mps`), else the city's: someone standing still (at a light, loading the van), or whose
speed is unknown, will not stay still.
"""

from __future__ import annotations

import msgspec


class EtaModel(msgspec.Struct, frozen=True, kw_only=True):
    detour_factor: float = 1.3
    """Roads are longer than the great circle: the straight-line distance is multiplied by this."""
    city_speed_kmh: float = 30.0
    """The speed assumed when the technician is not moving (or their speed is unknown)."""
    moving_speed_mps: float = 1.0
    """At or above this recent speed the technician counts as moving and their own speed is used."""

    def __post_init__(self) -> None:
        # A zero speed would divide by zero: the city speed, and any speed counted as moving, must be positive.
        if self.detour_factor <= 0 or self.city_speed_kmh <= 0 or self.moving_speed_mps <= 0:
            raise ValueError("detour_factor, city_speed_kmh and moving_speed_mps must be positive")

    def road_m(self, great_circle_m: float) -> float:
        """The distance travelled along the roads."""
        return great_circle_m * self.detour_factor

    def speed_mps(self, recent_speed_mps: float | None) -> float:
        """The speed of the trip: the recent one while moving, else the city's."""
        if recent_speed_mps is not None and recent_speed_mps >= self.moving_speed_mps:
            return recent_speed_mps
        return self.city_speed_kmh / 3.6

    def duration_s(self, great_circle_m: float, recent_speed_mps: float | None) -> float:
        """Travel time over a great-circle distance; `recent_speed_mps` is None when unknown."""
        return self.road_m(great_circle_m) / self.speed_mps(recent_speed_mps)

    def seconds(self, great_circle_m: float, recent_speed_mps: float | None) -> int:
        """`duration_s` in whole seconds (rounded to the nearest)."""
        return round(self.duration_s(great_circle_m, recent_speed_mps))
