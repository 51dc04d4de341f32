// FUME live dashboard: polls the API (same origin; the token travels in the cookie set by /?token=...)
// and draws one card per source. Plain JS + uPlot (vendored, MIT), no network beyond this server.
"use strict";
const SOURCES_EVERY_MS = 1000, HISTORY_EVERY_MS = 5000;
const cards = new Map();  // source name -> {el, plot, seq, historyAt}
let classNames = [];

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", cache: "no-store"});
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function period() { return Number(document.getElementById("period").value); }

function makeCard(source) {
  const root = el("article", "card");
  root.dataset.source = source.name;
  const title = el("h2");
  title.append(el("span", "name", source.name), el("span", "state", source.state));
  const spec = el("div", "muted spec", source.spec);
  const reason = el("div", "reason");
  const cls = el("div", "smoothed-class", "waiting for the first pair");
  const probs = el("div", "probs");
  const rate = el("div", "rate");
  const overlays = el("div", "overlays");
  const timeline = el("div", "timeline");
  const csv = el("a", "csv", "history of this source (CSV)");
  root.append(title, spec, reason, cls, probs, rate, overlays, timeline, csv);
  document.getElementById("cards").append(root);
  return {root, title, reason, cls, probs, rate, overlays, timeline, csv, plot: null, seq: -1, historyAt: 0, images: {}};
}

function showProbabilities(card, probabilities) {
  card.probs.replaceChildren();
  for (const name of classNames) {
    const p = probabilities ? probabilities[name] : null;
    const bar = el("div", "bar"), fill = el("div");
    fill.style.width = p == null ? "0" : `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    card.probs.append(el("span", name, name), bar, el("span", "", p == null ? "" : `${(100 * p).toFixed(0)} %`));
  }
}

function updateCard(card, source) {
  const state = card.title.querySelector(".state");
  state.textContent = source.state;
  state.className = `state ${source.state}`;
  card.reason.textContent = source.reason || "";
  card.root.classList.toggle("alerting", !!source.alert_active);
  const lag = source.lag_s == null ? "" : `, ${source.lag_s.toFixed(2)} s behind`;
  card.rate.textContent = `${source.rate_per_s.toFixed(1)} pairs/s processed, ${source.processed} in all, ${source.dropped} frames dropped${lag}`;
  card.csv.href = `api/history?format=csv&source=${encodeURIComponent(source.name)}`;
  const latest = source.latest;
  if (latest && latest.smoothed_class_name) {
    card.cls.textContent = `${latest.smoothed_class_name} (smoothed)`;
    card.cls.className = `smoothed-class ${latest.smoothed_class_name}`;
    showProbabilities(card, latest.smoothed_probabilities);
  }
  if (source.seq !== card.seq) {
    card.seq = source.seq;
    for (const gas of source.gases) {
      if (!card.images[gas]) {
        const figure = el("figure"), img = el("img");
        img.alt = `${gas.toUpperCase()} overlay of ${source.name}`;
        figure.append(img, el("figcaption", "", gas.toUpperCase()));
        card.overlays.append(figure);
        card.images[gas] = img;
      }
      card.images[gas].src = `api/sources/${encodeURIComponent(source.name)}/overlay/${gas}.jpg?v=${source.seq}`;
    }
  }
}

async function updateTimeline(card, name) {
  const since = Date.now() / 1000 - period();
  const data = await getJSON(`api/history?source=${encodeURIComponent(name)}&since=${since}&points=2000`);
  const rows = data.rows;
  const x = rows.map(r => r.time);
  const classOf = r => r.smoothed_class_name == null ? null : classNames.indexOf(r.smoothed_class_name);
  const series = [x, rows.map(r => r.co2_plume_area_percent), rows.map(r => r.ch4_plume_area_percent), rows.map(classOf)];
  if (!card.plot) {
    const width = Math.max(300, card.root.clientWidth - 32);
    card.plot = new uPlot({
      width, height: 180,
      series: [
        {},
        {label: "CO2 plume %", stroke: "#ef6c00", scale: "%"},
        {label: "CH4 plume %", stroke: "#4a78c2", scale: "%"},
        {label: "smoothed class", stroke: "#1d2330", width: 2, scale: "class", paths: uPlot.paths.stepped({align: 1}),
         value: (u, v) => v == null ? "-" : classNames[v]},
      ],
      scales: {x: {time: true, range: () => [Date.now() / 1000 - period(), Date.now() / 1000]}, "%": {auto: true}, class: {range: [-0.2, Math.max(classNames.length - 1, 1) + 0.2]}},
      axes: [{}, {scale: "%", label: "plume area %"},
             {scale: "class", side: 1, grid: {show: false}, splits: () => classNames.map((_, i) => i),
              values: (u, splits) => splits.map(i => classNames[i] || ""), size: 90}],
    }, series, card.timeline);
  } else {
    card.plot.setData(series);
  }
}

function showAlerts(sources) {
  const list = document.getElementById("alert-list");
  list.replaceChildren();
  for (const s of sources.filter(s => s.alert_active)) list.append(el("li", "", `${s.name}: ${s.latest ? s.latest.smoothed_class_name : ""} (alert ${s.alert_id})`));
  document.getElementById("alerts").hidden = list.children.length === 0;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const data = await getJSON("api/sources");
    classNames = data.class_names;
    const notice = document.getElementById("model-notice");
    notice.hidden = !data.model.notice;
    notice.textContent = data.model.notice ? `Model ${data.model.name}: ${data.model.notice}.` : "";
    document.getElementById("no-sources").hidden = data.sources.length > 0;
    const now = Date.now();
    for (const source of data.sources) {
      if (!cards.has(source.name)) cards.set(source.name, makeCard(source));
      const card = cards.get(source.name);
      updateCard(card, source);
      if (now - card.historyAt > HISTORY_EVERY_MS || card.plot === null) {
        card.historyAt = now;
        await updateTimeline(card, source.name);
      }
    }
    showAlerts(data.sources);
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    status.textContent = `cannot reach the service: ${err.message}`;
  }
  setTimeout(refresh, SOURCES_EVERY_MS);
}

// ?period=SECONDS (one of the choices) opens the page on that timeline period.
const asked = new URLSearchParams(location.search).get("period");
if (asked && document.querySelector(`#period option[value="${CSS.escape(asked)}"]`)) document.getElementById("period").value = asked;
document.getElementById("period").addEventListener("change", () => { for (const card of cards.values()) card.historyAt = 0; });
refresh();
