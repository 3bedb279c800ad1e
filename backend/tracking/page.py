"""The customer's tracking page (`/t/{tracking_token}`): HTML that states the status and the ETA by itself,
and a small script that keeps it current over the live socket.

The script and the style are inlined and allowed by their hashes in the Content-Security-Policy: the page
loads nothing it depends on from anywhere, so it works when only the API is reachable; map tiles are the
one outside resource, and a tile that does not load costs nothing but a blank square. The wording lives
here once, for the server's rendering and (as JSON) for the script's.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from backend.tracking.schemas import TrackingView

HERE = Path(__file__).parent
TILE_SERVER = "https://tile.openstreetmap.org"

WORDING = {
    "headlines": {
        "open": "We are finding a technician for you",
        "offering": "We are finding a technician for you",
        "unfilled": "We are still looking for a technician",
        "assigned": "{name} will come to you",
        "en_route": "{name} is on the way",
        "on_site": "{name} has arrived",
        "completed": "Your visit is complete",
        "approved": "Your visit is complete",
        "incomplete": "Your visit is complete",
        "cancelled": "This visit was cancelled",
    },
    "someone": "Your technician",
    "eta_under_a_minute": "Arriving in less than a minute",
    "eta_minutes": "Arriving in about {m} min",
    "eta_hours": "Arriving in about {h} h {m} min",
    "eta_clock": "(around {t})",
    "eta_unknown": "Arrival time coming soon",
    "arrived": "Arrived",
    "window": "Visit window: {day}, {from}–{to}",
    "position": "Last seen at {lat}, {lon} ({t})",
    "map_label": "Map around the technician's last position",
    "live": "Updates live.",
    "reconnecting": "Reconnecting…",
    "link_closed": "This tracking link has closed.",
    "served": "As of {t}.",
}


@dataclass(frozen=True)
class Page:
    template: string.Template
    scripts: str
    style: str
    content_security_policy: str


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


@functools.cache
def page() -> Page:
    """The page's parts, read once, on the first request that needs them."""
    script = (HERE / "page.js").read_text()
    style = (HERE / "page.css").read_text()
    # A JSON data block is not run, so it needs no hash; `<` is escaped so that it cannot end the element.
    wording = msgspec.json.encode(WORDING).decode().replace("<", "\\u003c")
    return Page(
        template=string.Template((HERE / "page.html").read_text()),
        scripts=f'<script type="application/json" id="wording">{wording}</script>\n<script>{script}</script>',
        style=style,
        content_security_policy="; ".join(
            (
                "default-src 'none'",
                f"script-src {_sha256(script)}",
                f"style-src {_sha256(style)}",
                f"img-src data: {TILE_SERVER}",
                "connect-src 'self'",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            )
        ),
    )


def _clock(moment: datetime) -> str:
    # The server does not know the customer's time zone; the script shows local times once it runs.
    return moment.astimezone(UTC).strftime("%H:%M UTC")


def eta_text(eta_s: int) -> str:
    if eta_s < 60:
        return WORDING["eta_under_a_minute"]
    minutes = round(eta_s / 60)
    if minutes < 60:
        return WORDING["eta_minutes"].format(m=minutes)
    return WORDING["eta_hours"].format(h=minutes // 60, m=minutes % 60)


def render(view: TrackingView, now: datetime) -> str:
    """The page for a live link; every value is escaped."""
    parts = page()
    name = view.technician.first_name if view.technician else WORDING["someone"]
    headline = WORDING["headlines"][view.status].format(name=name)
    eta, clock = "", ""
    if view.status == "on_site":
        eta = WORDING["arrived"]
    elif view.status == "en_route" and view.eta_s is not None and view.eta_at is not None:
        eta, clock = eta_text(view.eta_s), WORDING["eta_clock"].format(t=_clock(view.eta_at))
    elif view.status == "en_route":
        eta = WORDING["eta_unknown"]
    window = WORDING["window"].format(
        day=view.window.start.astimezone(UTC).strftime("%a %d %b"),
        **{"from": _clock(view.window.start), "to": _clock(view.window.end)},
    )
    at = view.technician_location
    position, href = "", "#"
    if at is not None:
        position = WORDING["position"].format(lat=f"{at.lat:.5f}", lon=f"{at.lon:.5f}", t=_clock(at.recorded_at))
        href = f"https://www.openstreetmap.org/?mlat={at.lat:.5f}&mlon={at.lon:.5f}#map=16/{at.lat:.5f}/{at.lon:.5f}"
    e = functools.partial(html.escape, quote=True)
    return parts.template.substitute(
        title=e(headline),
        style=parts.style,
        headline=e(headline),
        eta_hidden="" if eta else " hidden",
        eta_text=e(eta),
        eta_clock=e(clock),
        window=e(window),
        position_hidden="" if at else " hidden",
        position_text=e(position),
        position_href=e(href),
        live=e(WORDING["served"].format(t=_clock(now))),
        script=parts.scripts,
    )


MESSAGE_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<link rel="icon" href="data:,">
<title>$title</title>
<style>$style</style>
</head>
<body>
<main>
<p class="brand">Truckroll</p>
<h1>$title</h1>
<p>$detail</p>
</main>
</body>
</html>
"""


def render_message(title: str, detail: str) -> str:
    """A page without a view (unknown or closed link, too many requests): same style, no script."""
    return string.Template(MESSAGE_PAGE).substitute(
        title=html.escape(title), detail=html.escape(detail), style=page().style
    )
