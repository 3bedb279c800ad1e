"use strict";
// The page as served already states the status and the ETA; this keeps it current without a reload.
// News comes over the live socket; while the socket is down the page reconnects with backoff and reads
// the JSON view once per attempt, so it keeps updating (more slowly) where WebSockets do not get through.
(() => {
  const token = decodeURIComponent(location.pathname.split("/").pop());
  const wording = JSON.parse(document.getElementById("wording").textContent);
  const byId = (id) => document.getElementById(id);
  const TILE = 256;
  const ZOOM = 15;
  const MAP_W = 360;
  const MAP_H = 220;
  const SVG = "http://www.w3.org/2000/svg";

  let view = null;
  let attempts = 0;
  let closed = false;
  let retry = null;
  let socket = null;

  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const day = (iso) => new Date(iso).toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" });

  function etaText(seconds) {
    if (seconds < 60) return wording.eta_under_a_minute;
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return wording.eta_minutes.replace("{m}", minutes);
    return wording.eta_hours.replace("{h}", Math.floor(minutes / 60)).replace("{m}", minutes % 60);
  }

  function show(id, text) {
    const element = byId(id);
    element.hidden = text === null;
    if (text !== null) element.textContent = text;
  }

  function renderEta() {
    const eta = byId("eta");
    if (view.status === "on_site") {
      eta.hidden = false;
      byId("eta-text").textContent = wording.arrived;
      byId("eta-clock").textContent = "";
    } else if (view.status === "en_route" && view.eta_at) {
      const seconds = Math.max(0, (Date.parse(view.eta_at) - Date.now()) / 1000);
      eta.hidden = false;
      byId("eta-text").textContent = etaText(seconds);
      byId("eta-clock").textContent = wording.eta_clock.replace("{t}", clock(view.eta_at));
    } else if (view.status === "en_route") {
      eta.hidden = false;
      byId("eta-text").textContent = wording.eta_unknown;
      byId("eta-clock").textContent = "";
    } else {
      eta.hidden = true;
    }
  }

  function render(next) {
    view = next;
    const name = view.technician ? view.technician.first_name : wording.someone;
    byId("headline").textContent = (wording.headlines[view.status] || view.status).replace("{name}", name);
    document.title = byId("headline").textContent;
    renderEta();
    const w = view.window;
    show("window", wording.window.replace("{day}", day(w.start)).replace("{from}", clock(w.start)).replace("{to}", clock(w.end)));
    const at = view.technician_location;
    byId("position").hidden = !at;
    if (at) {
      byId("position-text").textContent = wording.position
        .replace("{lat}", at.lat.toFixed(5))
        .replace("{lon}", at.lon.toFixed(5))
        .replace("{t}", clock(at.recorded_at));
      byId("position-link").href =
        `https://www.openstreetmap.org/?mlat=${at.lat.toFixed(5)}&mlon=${at.lon.toFixed(5)}#map=16/${at.lat.toFixed(5)}/${at.lon.toFixed(5)}`;
    }
    renderMap(at);
  }

  // A few OpenStreetMap tiles around the technician, drawn as SVG images: a tile that fails to load leaves
  // a blank square, and the text above still says everything.
  function renderMap(at) {
    const container = byId("map");
    container.replaceChildren();
    container.hidden = !at;
    if (!at) return;
    const scale = TILE * 2 ** ZOOM;
    const lat = (at.lat * Math.PI) / 180;
    const x = ((at.lon + 180) / 360) * scale;
    const y = ((1 - Math.log(Math.tan(lat) + 1 / Math.cos(lat)) / Math.PI) / 2) * scale;
    const left = x - MAP_W / 2;
    const top = y - MAP_H / 2;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${MAP_W} ${MAP_H}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", wording.map_label);
    for (let tx = Math.floor(left / TILE); tx <= Math.floor((left + MAP_W) / TILE); tx++) {
      for (let ty = Math.floor(top / TILE); ty <= Math.floor((top + MAP_H) / TILE); ty++) {
        const tile = document.createElementNS(SVG, "image");
        tile.setAttribute("href", `https://tile.openstreetmap.org/${ZOOM}/${tx}/${ty}.png`);
        tile.setAttribute("x", tx * TILE - left);
        tile.setAttribute("y", ty * TILE - top);
        tile.setAttribute("width", TILE);
        tile.setAttribute("height", TILE);
        svg.append(tile);
      }
    }
    const marker = document.createElementNS(SVG, "circle");
    marker.setAttribute("cx", MAP_W / 2);
    marker.setAttribute("cy", MAP_H / 2);
    marker.setAttribute("r", 9);
    marker.setAttribute("fill", "#1565c0");
    marker.setAttribute("stroke", "#fff");
    marker.setAttribute("stroke-width", 3);
    svg.append(marker);
    const attribution = document.createElement("p");
    attribution.className = "attribution";
    attribution.textContent = "© OpenStreetMap contributors";
    container.append(svg, attribution);
  }

  function linkClosed() {
    closed = true;
    clearTimeout(retry);
    show("live", wording.link_closed);
  }

  function poll() {
    fetch(`/v1/track/${encodeURIComponent(token)}`, { cache: "no-store" })
      .then((response) => {
        if (response.status === 404) linkClosed();
        else if (response.ok) return response.json().then(render);
      })
      .catch(() => {});
  }

  function connect() {
    clearTimeout(retry);
    if (closed) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/v1/track/${encodeURIComponent(token)}/live`);
    socket.onopen = () => {
      attempts = 0;
      show("live", wording.live);
    };
    socket.onmessage = (event) => render(JSON.parse(event.data));
    socket.onclose = (event) => {
      socket = null;
      if (event.code === 4404) return linkClosed();
      show("live", wording.reconnecting);
      poll();
      // Backoff with jitter, at most 30 s apart (a minute once rate-limited): well inside the link's limit.
      const ceiling = event.code === 4429 ? 60000 : Math.min(30000, 1000 * 2 ** attempts);
      attempts += 1;
      retry = setTimeout(connect, ceiling / 2 + (Math.random() * ceiling) / 2);
    };
  }

  // Phones drop sockets of pages in the background: come back at once when the page is looked at again.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !socket && !closed) connect();
  });
  setInterval(() => view && renderEta(), 15000);
  connect();
})();
