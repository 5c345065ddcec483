// The wasmos dashboard: renders ClusterState snapshots from /api/v1/state and the
// /api/v1/events stream. Plain DOM, no dependencies.
"use strict";

const STATES = ["pending", "staging", "starting", "running", "finished", "failed", "killed", "lost", "error"];
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#a371f7", "#f85149", "#39c5cf", "#db61a2", "#e3b341"];
const SENSORS = ["camera", "microphone", "lidar", "imu", "gps", "sensor", "temperature", "radar"];
// Reconnect delay after the event stream drops; EventSource retries by itself too.
const RECONNECT_MS = 2000;
// Between two loads of the state in polling mode (`/?live=poll`), for proxies that cut
// long-lived streams and for headless browsers whose virtual time waits on open requests.
const POLL_MS = 1000;

let latest = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fmt(n) { return Math.round(n * 100) / 100; }

function resText(r) {
  const parts = Object.entries((r && r.scalars) || {}).map(([k, v]) => `${k} ${fmt(v)}`);
  return parts.join(" · ") || "—";
}

function attrValues(attrs, key) {
  const v = (attrs || {})[key];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function badges(agent) {
  const out = [];
  for (const arch of attrValues(agent.attributes, "arch")) out.push(el("span", { class: "badge arch" }, arch));
  const has = attrValues(agent.attributes, "has");
  const gpus = (agent.total.scalars || {}).gpus || 0;
  if (gpus > 0 || has.includes("gpu")) out.push(el("span", { class: "badge gpu" }, gpus > 0 ? `GPU ×${fmt(gpus)}` : "GPU"));
  for (const h of has) {
    if (h !== "gpu") out.push(el("span", { class: "badge" + (SENSORS.includes(h) ? " sensor" : "") }, h));
  }
  for (const [k, v] of Object.entries(agent.attributes || {})) {
    if (k !== "arch" && k !== "has") out.push(el("span", { class: "badge" }, `${k}=${Array.isArray(v) ? v.join(",") : v}`));
  }
  if (agent.state === "lost") out.push(el("span", { class: "badge lost" }, "lost"));
  if (agent.state === "disconnected") out.push(el("span", { class: "badge lost" }, "disconnected"));
  return out;
}

function bar(name, agent) {
  const total = (agent.total.scalars || {})[name] || 0;
  if (!total) return null;
  const used = (agent.used.scalars || {})[name] || 0;
  const offered = (agent.offered.scalars || {})[name] || 0;
  const pct = (x) => `${Math.min(100, (100 * x) / total)}%`;
  const track = el("div", { class: "track" },
    el("div", { class: "used", style: `width:${pct(used)}` }),
    el("div", { class: "offered", style: `width:${pct(offered)}` }));
  return el("div", { class: "bar" }, `${name} ${fmt(used)} used / ${fmt(total)}` + (offered ? ` (${fmt(offered)} offered)` : ""), track);
}

function renderFleet(state) {
  const root = document.getElementById("fleet");
  root.replaceChildren();
  if (!state.agents.length) root.append(el("div", { class: "empty" }, "no agents"));
  for (const a of state.agents) {
    const card = el("div", { class: "card" + (a.state === "lost" ? " lost" : ""), "data-agent": a.agent_id },
      el("div", { class: "name" }, a.hostname || a.agent_id),
      el("div", { class: "sub" }, `${a.agent_id} · ${a.tasks} task(s)`),
      el("div", {}, ...badges(a)));
    for (const r of ["cpus", "mem", "gpus"]) { const b = bar(r, a); if (b) card.append(b); }
    root.append(card);
  }
}

function colorOf(state, id) {
  const ids = state.frameworks.map((f) => f.framework_id).sort();
  const i = ids.indexOf(id);
  return COLORS[(i < 0 ? 0 : i) % COLORS.length];
}

function renderFrameworks(state) {
  const body = document.querySelector("#frameworks tbody");
  body.replaceChildren();
  for (const f of state.frameworks) {
    body.append(el("tr", { "data-framework": f.framework_id },
      el("td", {}, el("i", { style: `display:inline-block;width:.6rem;height:.6rem;margin-right:.3rem;background:${colorOf(state, f.framework_id)}` }), f.name, el("div", { class: "sub" }, f.framework_id)),
      el("td", {}, `${f.role} (w ${fmt(f.weight)})`),
      el("td", { style: "white-space:nowrap" }, `${(100 * f.dominant_share).toFixed(1)}%`),
      el("td", {}, f.tasks),
      el("td", {}, f.offers)));
  }
  if (!state.frameworks.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "no frameworks")));
  const legend = document.getElementById("legend");
  legend.replaceChildren(...state.frameworks.map((f) =>
    el("span", {}, el("i", { style: `background:${colorOf(state, f.framework_id)}` }), f.name)));
  drawShares(state);
}

// Dominant shares over time, one line per framework, y from 0 to the largest share seen
// (at least 10%), x over the samples the master kept.
function drawShares(state) {
  const canvas = document.getElementById("shares");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300, height = 160;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const samples = state.share_history || [];
  let top = 0.1;
  for (const s of samples) for (const v of Object.values(s.shares)) top = Math.max(top, v);
  top = Math.min(1, Math.ceil(top * 10) / 10);
  const pad = { l: 34, r: 6, t: 8, b: 16 };
  const x = (i) => pad.l + (samples.length < 2 ? 0 : (i * (width - pad.l - pad.r)) / (samples.length - 1));
  const y = (v) => height - pad.b - (v / top) * (height - pad.t - pad.b);
  g.strokeStyle = "#2a3541"; g.fillStyle = "#8b98a5"; g.font = "10px system-ui"; g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    g.beginPath(); g.moveTo(pad.l, y(v)); g.lineTo(width - pad.r, y(v)); g.stroke();
    g.fillText(`${Math.round(v * 100)}%`, 2, y(v) + 3);
  }
  if (samples.length) {
    const secs = Math.round((samples[samples.length - 1].at_ms - samples[0].at_ms) / 1000);
    g.fillText(`last ${secs}s`, width - pad.r - 48, height - 3);
  }
  for (const f of state.frameworks) {
    g.strokeStyle = colorOf(state, f.framework_id); g.lineWidth = 2; g.beginPath();
    let started = false;
    samples.forEach((s, i) => {
      const v = s.shares[f.framework_id];
      if (v === undefined) { started = false; return; }
      if (started) g.lineTo(x(i), y(v)); else { g.moveTo(x(i), y(v)); started = true; }
    });
    g.stroke();
  }
}

function fillSelect(id, values, label) {
  const select = document.getElementById(id);
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, label), ...values.map((v) => el("option", { value: v }, v)));
  select.value = values.includes(chosen) ? chosen : "";
}

function renderTasks(state) {
  fillSelect("filter-state", STATES, "any state");
  fillSelect("filter-framework", state.frameworks.map((f) => f.framework_id), "any framework");
  fillSelect("filter-agent", state.agents.map((a) => a.agent_id), "any agent");
  const want = (id) => document.getElementById(id).value;
  const tasks = state.tasks.filter((t) =>
    (!want("filter-state") || t.state === want("filter-state")) &&
    (!want("filter-framework") || t.framework_id === want("filter-framework")) &&
    (!want("filter-agent") || t.agent_id === want("filter-agent")));
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren(...tasks.map((t) => el("tr", { "data-task": t.task_id, "data-state": t.state },
    el("td", {}, t.name || t.task_id, el("div", { class: "sub" }, t.task_id)),
    el("td", {}, el("span", { class: `state ${t.state}` }, t.state), t.exit_code === null || t.exit_code === undefined ? "" : ` (exit ${t.exit_code})`),
    el("td", {}, t.agent_id),
    el("td", { class: "hide-narrow" }, resText(t.resources), usageText(t)))));
  if (!tasks.length) body.append(el("tr", {}, el("td", { colspan: 4, class: "empty" }, "no tasks")));
}

// What the task's agent measured: " · 0.012 s cpu · 64 KiB", or nothing before a report.
function usageText(t) {
  if (typeof t.cpu_seconds !== "number") return "";
  const kib = (t.memory_bytes || 0) / 1024;
  const mem = kib >= 1024 ? `${(kib / 1024).toFixed(1)} MiB` : `${Math.round(kib)} KiB`;
  return ` · ${t.cpu_seconds.toFixed(3)} s cpu · ${mem}`;
}

function renderLog(state) {
  const list = document.getElementById("log");
  const entries = state.log.slice().reverse();
  list.replaceChildren(...entries.map((e) => el("li", { "data-kind": e.kind },
    el("time", {}, new Date(e.at_ms).toLocaleTimeString()),
    el("span", { class: "kind" }, e.kind.replace("_", " ")), e.message)));
  if (!entries.length) list.append(el("li", { class: "empty" }, "nothing yet"));
}

function render(state) {
  latest = state;
  const active = state.agents.filter((a) => a.state === "active").length;
  const running = state.tasks.filter((t) => t.state === "running").length;
  document.getElementById("summary").textContent =
    `${active} agent(s) · ${state.frameworks.length} framework(s) · ${running} running · ${state.offers.length} offer(s) out`;
  renderFleet(state);
  renderFrameworks(state);
  renderTasks(state);
  renderLog(state);
}

function follow() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/v1/events");
  source.addEventListener("state", (e) => { live.classList.add("on"); render(JSON.parse(e.data)); });
  source.onerror = () => {
    live.classList.remove("on");
    if (source.readyState === EventSource.CLOSED) setTimeout(follow, RECONNECT_MS);
  };
}

for (const id of ["filter-state", "filter-framework", "filter-agent"]) {
  document.getElementById(id).addEventListener("change", () => latest && render(latest));
}
window.addEventListener("resize", () => latest && drawShares(latest));
function load() {
  return fetch("/api/v1/state").then((r) => r.json()).then(render).catch(() => {});
}

function poll() {
  load().then(() => {
    document.getElementById("live").classList.add("on");
    setTimeout(poll, POLL_MS);
  });
}

if (new URLSearchParams(location.search).get("live") === "poll") {
  poll();
} else {
  load();
  follow();
}
