"""Geography helpers: our API speaks {lat, lon}; PostGIS points are (lon, lat)."""

from __future__ import annotations

import shapely
from geoalchemy2 import Geometry
from geoalchemy2.shape import from_shape
from sqlalchemy import ColumnElement, cast, func


def point(lat: float, lon: float):
    return from_shape(shapely.Point(lon, lat), srid=4326)


def lat_of(column) -> ColumnElement[float]:
    return func.ST_Y(cast(column, Geometry))


def lon_of(column) -> ColumnElement[float]:
    return func.ST_X(cast(column, Geometry))
