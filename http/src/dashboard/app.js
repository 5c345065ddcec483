// The wasmos dashboard: renders ClusterState snapshots from /api/v1/state and the
// /api/v1/events stream, and a task's output from /api/v1/tasks/{id}/logs. Plain DOM, no
// dependencies. On a cluster with HTTP tokens, the first answer 401 asks for a token
// (kept in sessionStorage: this tab only, gone when it closes), sent on every request.
"use strict";

const STATES = ["pending", "staging", "starting", "running", "finished", "failed", "killed", "lost", "error"];
const ENDED = ["finished", "failed", "killed", "lost", "error"];
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#a371f7", "#f85149", "#39c5cf", "#db61a2", "#e3b341"];
const KIND_COLORS = { cpus: "#58a6ff", mem: "#3fb950", disk: "#d29922", gpus: "#a371f7" };
// For the other kinds (ports, device sets), in the order the agent lists them.
const MORE_KIND_COLORS = ["#39c5cf", "#db61a2", "#e3b341", "#f85149"];
const SENSORS = ["camera", "microphone", "lidar", "imu", "gps", "sensor", "temperature", "radar"];
// Quantities of these kinds are MiB.
const MIB_KINDS = ["mem", "disk"];
// The framework whose tasks are named by their job (see `jobs::request`).
const JOBS_FRAMEWORK = "jobs";
// Reconnect delay after the event stream drops or cannot be opened.
const RECONNECT_MS = 2000;
// Where the bearer token is kept: sessionStorage, so it leaves with the tab.
const TOKEN_KEY = "wasmos.token";
// Between two loads of the state in polling mode (`/?live=poll`), for proxies that cut
// long-lived streams and for headless browsers whose virtual time waits on open requests.
const POLL_MS = 1000;
// Between two loads of a task's output when polling, or after it could not be followed.
const LOG_RETRY_MS = 3000;
// Lines of output asked for first; the panel keeps at most LOG_CHARS_MAX of it.
const LOG_TAIL_LINES = 500;
const LOG_CHARS_MAX = 200000;

const polling = new URLSearchParams(location.search).get("live") === "poll";
let latest = null;

// The bearer token: asked for once when the API answers 401, then sent on every request.
let tokenWanted = null;

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// Shows the token form (once, however many requests were refused) and resolves when a
// token was entered. `refused`: the token kept was not taken.
function askToken(refused) {
  if (tokenWanted) return tokenWanted;
  if (refused) sessionStorage.removeItem(TOKEN_KEY);
  $("token-message").textContent = refused ? "That token was refused; enter another." : "";
  $("token-dialog").hidden = false;
  $("token-input").focus();
  tokenWanted = new Promise((resolve) => {
    $("token-form").onsubmit = (e) => {
      e.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token-input").value = "";
      $("token-dialog").hidden = true;
      tokenWanted = null;
      resolve();
    };
  });
  return tokenWanted;
}

// fetch with the token; a 401 asks for a token and tries again with it.
async function api(path, options) {
  for (;;) {
    const sent = sessionStorage.getItem(TOKEN_KEY);
    const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...((options || {}).headers || {}) } });
    if (response.status !== 401) return response;
    // Another request may have had a token entered meanwhile: then just try again.
    if (sessionStorage.getItem(TOKEN_KEY) === sent) await askToken(sent !== null);
  }
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const $ = (id) => document.getElementById(id);

function fmt(n) { return Math.round(n * 100) / 100; }

function amount(kind, n) {
  if (!MIB_KINDS.includes(kind)) return `${fmt(n)}`;
  return n >= 1024 ? `${fmt(n / 1024)} GiB` : `${fmt(n)} MiB`;
}

function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  return s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

// A resource vector as kind → quantity: scalars as they are, ranges and sets as counts.
function quantities(r) {
  const q = {};
  for (const [k, v] of Object.entries((r && r.scalars) || {})) q[k] = v;
  for (const [k, v] of Object.entries((r && r.ranges) || {})) q[k] = v.reduce((n, [a, b]) => n + b - a + 1, 0);
  for (const [k, v] of Object.entries((r && r.sets) || {})) q[k] = v.length;
  return q;
}

function resText(r) {
  const parts = Object.entries(quantities(r)).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${amount(k, v)}`);
  return parts.join(" · ") || "—";
}

function kindColor(kind, kinds) {
  const others = kinds.filter((k) => !KIND_COLORS[k]);
  return KIND_COLORS[kind] || MORE_KIND_COLORS[others.indexOf(kind) % MORE_KIND_COLORS.length];
}

function plural(n, what) { return `${n} ${what}${n === 1 ? "" : "s"}`; }

function frameworkColor(state, id) {
  const ids = state.frameworks.map((f) => f.framework_id).sort();
  return COLORS[Math.max(0, ids.indexOf(id)) % COLORS.length];
}

function frameworkName(state, id) {
  const f = state.frameworks.find((f) => f.framework_id === id);
  return f ? f.name : id;
}

function attrValues(attrs, key) {
  const v = (attrs || {})[key];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function badges(agent) {
  const out = [];
  for (const arch of attrValues(agent.attributes, "arch")) out.push(el("span", { class: "badge arch" }, arch));
  const has = attrValues(agent.attributes, "has");
  const gpus = quantities(agent.total).gpus || 0;
  if (gpus > 0 || has.includes("gpu")) out.push(el("span", { class: "badge gpu" }, gpus > 0 ? `GPU ×${fmt(gpus)}` : "GPU"));
  for (const h of has) {
    if (h !== "gpu") out.push(el("span", { class: "badge" + (SENSORS.includes(h) ? " sensor" : "") }, h));
  }
  for (const [k, v] of Object.entries(agent.attributes || {})) {
    if (k !== "arch" && k !== "has") out.push(el("span", { class: "badge" }, `${k}=${Array.isArray(v) ? v.join(",") : v}`));
  }
  return out;
}

// Used (solid) and offered (hatched) of one kind of the agent's resources.
function bar(kind, color, total, used, offered) {
  const pct = (x) => `${Math.min(100, (100 * x) / total)}%`;
  const track = el("div", { class: "track" },
    el("div", { class: "used", style: `width:${pct(used)};background:${color}` }),
    el("div", { class: "offered", style: `width:${pct(offered)};color:${color}` }));
  const label = `${kind} ${amount(kind, used)} / ${amount(kind, total)}` + (offered ? ` · ${amount(kind, offered)} offered` : "");
  return el("div", { class: "bar", "data-kind": kind }, el("i", { style: `background:${color}` }), label, track);
}

// A lost agent's row is as it was just before it was lost: nothing is offered on it now.
function agentCard(state, a) {
  const total = quantities(a.total), used = quantities(a.used);
  const offered = a.state === "lost" ? {} : quantities(a.offered);
  const kinds = Object.keys(total).filter((k) => total[k] > 0);
  const card = el("div", { class: `card ${a.state}`, "data-agent": a.agent_id, "data-state": a.state },
    el("div", { class: "card-head" }, el("span", { class: "name" }, a.agent_id), el("span", { class: `badge state ${a.state}` }, a.state)),
    el("div", { class: "sub" }, `${a.hostname || "no hostname"} · ${plural(a.tasks, "task")}`),
    el("div", {}, ...badges(a)));
  for (const k of kinds) card.append(bar(k, kindColor(k, kinds), total[k], used[k] || 0, offered[k] || 0));
  const history = (state.agent_usage || {})[a.agent_id];
  if (history && history.at_ms.length) {
    card.append(el("canvas", { class: "spark", height: 36, "aria-label": `${a.agent_id} usage over time` }),
      el("div", { class: "sub spark-caption" }, sinceText("in use", history.at_ms)));
  }
  return card;
}

function span(times) { return times.length ? times[times.length - 1] - times[0] : 0; }

function sinceText(what, times) {
  return span(times) ? `${what}, last ${duration(span(times))}` : `${what} now`;
}

// Active agents first, then the disconnected and the lost ones (the master lists the
// registered ones by id, then the lost).
function renderFleet(state) {
  const order = (a) => ["active", "disconnected", "lost"].indexOf(a.state);
  const agents = state.agents.slice().sort((a, b) => order(a) - order(b));
  $("fleet").replaceChildren(...agents.map((a) => agentCard(state, a)));
  if (!agents.length) $("fleet").append(el("div", { class: "empty" }, "no agents"));
  const counts = ["active", "disconnected", "lost"].map((s) => [s, agents.filter((a) => a.state === s).length]);
  $("fleet-counts").textContent = counts.filter(([, n]) => n).map(([s, n]) => `${n} ${s}`).join(" · ");
  for (const canvas of document.querySelectorAll("canvas.spark")) {
    const id = canvas.parentElement.dataset.agent;
    const history = state.agent_usage[id];
    const kinds = Object.keys(history.used);
    drawLines(canvas, history.at_ms, kinds.map((k) => ({ color: kindColor(k, kinds), values: history.used[k] })), 1, 0);
  }
}

// Lines over time on a canvas: x from the first sample to the last (one sample is a flat
// line), y from 0 to `top`, with a percentage grid line every `grid` if given.
function drawLines(canvas, times, series, top, grid) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300, height = Number(canvas.getAttribute("height"));
  canvas.width = width * ratio; canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  const pad = grid ? { l: 34, r: 6, t: 8, b: 8 } : { l: 1, r: 1, t: 3, b: 3 };
  const first = times[0], range = span(times);
  const x = (t) => pad.l + (range ? ((t - first) * (width - pad.l - pad.r)) / range : 0);
  const y = (v) => height - pad.b - (Math.min(v, top) / top) * (height - pad.t - pad.b);
  g.strokeStyle = "#2a3541"; g.fillStyle = "#8b98a5"; g.font = "10px system-ui"; g.lineWidth = 1;
  for (let k = 0; grid && k <= Math.round(top / grid); k++) {
    const v = k * grid;
    g.beginPath(); g.moveTo(pad.l, y(v)); g.lineTo(width - pad.r, y(v)); g.stroke();
    g.fillText(`${Math.round(v * 100)}%`, 2, y(v) + 3);
  }
  for (const s of series) {
    g.strokeStyle = s.color; g.lineWidth = grid ? 2 : 1.5; g.beginPath();
    let started = false;
    times.forEach((t, i) => {
      const v = s.values[i];
      if (v === undefined) { started = false; return; }
      if (started) g.lineTo(x(t), y(v)); else { g.moveTo(x(t), y(v)); started = true; }
      if (times.length === 1) g.lineTo(width - pad.r, y(v));
    });
    g.stroke();
  }
}

function drawShares(state) {
  const samples = state.share_history || [];
  const times = samples.map((s) => s.at_ms);
  let most = 0;
  for (const s of samples) for (const v of Object.values(s.shares)) most = Math.max(most, v);
  const grid = most <= 0.2 ? 0.05 : most <= 0.5 ? 0.1 : 0.2;
  const top = Math.min(1, Math.max(0.1, Math.ceil(most / grid - 1e-9) * grid));
  const series = state.frameworks.map((f) => ({
    color: frameworkColor(state, f.framework_id),
    values: samples.map((s) => s.shares[f.framework_id]),
  }));
  drawLines($("shares"), times, series, top, grid);
  $("shares-caption").textContent = sinceText("dominant share in use", times);
}

function latestShare(state, id) {
  const samples = state.share_history || [];
  const v = samples.length ? samples[samples.length - 1].shares[id] : undefined;
  return v === undefined ? "—" : `${(100 * v).toFixed(1)}%`;
}

function renderFrameworks(state) {
  const rows = state.frameworks.map((f) => el("tr", { "data-framework": f.framework_id },
    el("td", {}, el("i", { class: "swatch", style: `background:${frameworkColor(state, f.framework_id)}` }), f.name,
      el("div", { class: "sub" }, f.framework_id + (f.connected ? "" : " · disconnected"))),
    el("td", {}, `${f.role} (w ${fmt(f.weight)})`),
    el("td", { class: "num" }, latestShare(state, f.framework_id)),
    el("td", { class: "num hide-narrow" }, `${(100 * f.dominant_share).toFixed(1)}%`),
    el("td", { class: "num" }, f.tasks)));
  $("frameworks").tBodies[0].replaceChildren(...rows);
  if (!rows.length) $("frameworks").tBodies[0].append(emptyRow(5, "no frameworks"));
  $("legend").replaceChildren(...state.frameworks.map((f) =>
    el("span", {}, el("i", { style: `background:${frameworkColor(state, f.framework_id)}` }), f.name)));
  drawShares(state);
}

function emptyRow(columns, text) {
  return el("tr", {}, el("td", { colspan: columns, class: "empty" }, text));
}

function stateCounts(tasks) {
  const counts = {};
  for (const t of tasks) counts[t.state] = (counts[t.state] || 0) + 1;
  return STATES.filter((s) => counts[s]).map((s) => el("span", { class: `state ${s}` }, `${counts[s]} ${s} `));
}

// Declared jobs (`GET /api/v1/jobs`), asked again at most every DECLARED_POLL_MS.
const DECLARED_POLL_MS = 2000;
let declared = [];
let declaredAt = 0;

async function refreshDeclared() {
  if (Date.now() - declaredAt < DECLARED_POLL_MS) return;
  declaredAt = Date.now();
  try {
    const response = await api("/api/v1/jobs");
    if (response.ok) declared = await response.json();
  } catch {
    // Shown again on the next snapshot.
  }
  if (latest) renderJobs(latest);
}

function rolloutText(r) {
  const from = r.from === null ? "none" : `v${r.from}`;
  const canaries = r.canaries ? `, ${plural(r.canaries, "canary")}` : "";
  return `rollout ${from} → v${r.to}: ${r.phase.replace("_", " ")} · ${r.new_placed} placed, ` +
    `${r.new_healthy} healthy, ${r.old_left} old left${canaries}`;
}

function declaredRow(j) {
  const stable = j.stable_version === null ? "none healthy yet" : `stable v${j.stable_version}`;
  const quarantined = j.quarantined.map((q) =>
    el("div", { class: "sub warn" }, `quarantined on ${q.agent_id} until ${new Date(q.until_at_ms).toLocaleTimeString()}`));
  return el("tr", { "data-job": j.name, "data-declared": "true", "data-job-state": j.state },
    el("td", {}, el("a", { href: "#", "data-search": j.name }, j.name), el("div", { class: "sub" }, `v${j.version}, ${stable}`)),
    el("td", {},
      el("span", { class: `state ${j.state === "failed" ? "failed" : "running"}` }, j.state),
      ` ${j.running}/${j.desired} running, ${j.healthy} healthy`,
      j.rollout ? el("div", { class: "sub rollout" }, rolloutText(j.rollout)) : null,
      ...quarantined));
}

// Declared jobs first; the jobs framework names every other job's tasks after the job.
function renderJobs(state) {
  refreshDeclared();
  const jobs = state.frameworks.filter((f) => f.name === JOBS_FRAMEWORK).map((f) => f.framework_id);
  const names = new Set(declared.map((j) => j.name));
  const byJob = new Map();
  for (const t of state.tasks.filter((t) => jobs.includes(t.framework_id) && !names.has(t.name))) {
    if (!byJob.has(t.name)) byJob.set(t.name, []);
    byJob.get(t.name).push(t);
  }
  const rows = declared.map(declaredRow).concat([...byJob].map(([name, tasks]) => {
    const waiting = tasks.find((t) => t.state === "pending");
    return el("tr", { "data-job": name },
      el("td", {}, el("a", { href: "#", "data-search": name }, name)),
      el("td", {}, ...stateCounts(tasks), waiting ? el("div", { class: "sub" }, waiting.reason) : null));
  }));
  $("jobs").tBodies[0].replaceChildren(...rows);
  if (!rows.length) $("jobs").tBodies[0].append(emptyRow(2, jobs.length ? "no jobs" : "no jobs framework"));
}

// Rebuilt only when the choices change: rebuilding closes a select the user has open.
function fillSelect(id, values, label) {
  const select = $(id);
  if (select.dataset.values === values.join("\n")) return;
  select.dataset.values = values.join("\n");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, label), ...values.map((v) => el("option", { value: v }, v)));
  select.value = values.includes(chosen) ? chosen : "";
}

function taskMatcher() {
  const [state, framework, agent] = ["filter-state", "filter-framework", "filter-agent"].map((id) => $(id).value);
  const text = $("filter-text").value.trim().toLowerCase();
  return (t) => (!state || t.state === state) && (!framework || t.framework_id === framework) &&
    (!agent || t.agent_id === agent) &&
    (!text || [t.task_id, t.name, t.reason].some((s) => (s || "").toLowerCase().includes(text)));
}

function taskRow(t) {
  const exit = t.exit_code === null || t.exit_code === undefined ? "" : ` (exit ${t.exit_code})`;
  return el("tr", { "data-task": t.task_id, "data-state": t.state, class: "clickable" },
    el("td", {}, el("a", { href: `#task=${encodeURIComponent(t.task_id)}` }, t.name || t.task_id), el("div", { class: "sub" }, t.task_id)),
    el("td", {}, el("span", { class: `state ${t.state}` }, t.state), exit, t.reason ? el("div", { class: "sub reason" }, t.reason) : null),
    el("td", { class: "nowrap" }, t.agent_id || "—"),
    el("td", { class: "hide-narrow" }, resText(t.resources), usageText(t)));
}

function renderTasks(state) {
  fillSelect("filter-state", STATES, "any state");
  fillSelect("filter-framework", state.frameworks.map((f) => f.framework_id), "any framework");
  fillSelect("filter-agent", state.agents.map((a) => a.agent_id), "any agent");
  const tasks = state.tasks.filter(taskMatcher());
  $("tasks").tBodies[0].replaceChildren(...tasks.map(taskRow));
  if (!tasks.length) $("tasks").tBodies[0].append(emptyRow(4, "no tasks"));
}

// What the task's agent measured: " · 0.012 s cpu · 64 KiB", or nothing before a report.
function usageText(t) {
  if (typeof t.cpu_seconds !== "number") return "";
  const kib = (t.memory_bytes || 0) / 1024;
  const mem = kib >= 1024 ? `${(kib / 1024).toFixed(1)} MiB` : `${Math.round(kib)} KiB`;
  return ` · ${t.cpu_seconds.toFixed(3)} s cpu · ${mem}`;
}

// Offer times are on the master's clock, which the snapshot gives as `master_now_ms`.
function renderOffers(state) {
  const rows = state.offers.map((o) => el("tr", { "data-offer": o.offer_id },
    el("td", {}, frameworkName(state, o.framework_id), el("div", { class: "sub" }, o.offer_id)),
    el("td", {}, o.agent_id),
    el("td", {}, resText(o.resources)),
    el("td", { class: "num" }, duration(state.master_now_ms - o.made_at_ms),
      typeof o.expires_at_ms === "number" ? el("div", { class: "sub" }, `expires in ${duration(o.expires_at_ms - state.master_now_ms)}`) : null)));
  $("offers").tBodies[0].replaceChildren(...rows);
  if (!rows.length) $("offers").tBodies[0].append(emptyRow(4, "no offers outstanding"));
}

function renderLog(state) {
  const entries = state.log.slice().reverse();
  $("log").replaceChildren(...entries.map((e) => el("li", { "data-kind": e.kind },
    el("time", {}, new Date(e.at_ms).toLocaleTimeString()),
    el("span", { class: "kind" }, e.kind.replace("_", " ")), e.message)));
  if (!entries.length) $("log").append(el("li", { class: "empty" }, "nothing yet"));
}

function renderSummary(state) {
  const count = (rows, s) => rows.filter((r) => r.state === s).length;
  const gone = state.agents.length - count(state.agents, "active");
  $("summary").textContent = [
    plural(count(state.agents, "active"), "active agent") + (gone ? ` · ${gone} gone` : ""),
    plural(state.frameworks.length, "framework"),
    `${count(state.tasks, "running")} running`,
    `${count(state.tasks, "pending")} pending`,
    plural(state.offers.length, "offer"),
  ].join(" · ");
}

function render(state) {
  latest = state;
  renderSummary(state);
  renderFleet(state);
  renderTasks(state);
  renderJobs(state);
  renderFrameworks(state);
  renderOffers(state);
  renderLog(state);
  renderDrill(state);
}

// The task drill-down: the panel follows `#task=<id>` in the address.
let logView = null;

function drilledTask() {
  const m = location.hash.match(/^#task=(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

function renderDrill(state) {
  const id = drilledTask();
  const panel = $("drill");
  panel.hidden = !id;
  if (!id) return;
  panel.dataset.task = id;
  const t = state && state.tasks.find((t) => t.task_id === id);
  $("drill-title").textContent = t ? t.name || id : id;
  $("drill-kill").disabled = !t || ENDED.includes(t.state);
  const facts = t ? [
    ["task", t.task_id], ["state", el("span", { class: `state ${t.state}` }, t.state)],
    ["reason", t.reason || "—"], ["exit code", t.exit_code ?? "—"],
    ["framework", frameworkName(state, t.framework_id)], ["agent", t.agent_id || "not placed"],
    ["resources", resText(t.resources)],
    ["launched", t.launched_at_ms ? new Date(t.launched_at_ms).toLocaleString() : "—"],
    ["measured", usageText(t).replace(/^ · /, "") || "—"],
  ] : [["task", id], ["state", "not listed (anymore)"]];
  $("drill-row").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  explainDrilled(t && t.state === "pending" ? id : null);
}

// Why a pending task waits (`GET /api/v1/explain/{id}`), asked again at most every
// DECLARED_POLL_MS while it is drilled into.
let explainedAt = 0;

async function explainDrilled(id) {
  const box = $("drill-explain");
  box.hidden = !id;
  if (!id || Date.now() - explainedAt < DECLARED_POLL_MS) return;
  explainedAt = Date.now();
  try {
    const response = await api(`/api/v1/explain/${encodeURIComponent(id)}`);
    if (!response.ok) return;
    const e = await response.json();
    const copy = e.copies[0];
    const rows = (copy ? copy.agents : []).map((a) => {
      const kind = typeof a.fit === "string" ? a.fit : Object.keys(a.fit)[0];
      return el("tr", { "data-fit": kind }, el("td", {}, a.hostname || a.agent_id), el("td", {}, kind), el("td", {}, a.message));
    });
    const fw = copy && copy.framework;
    const drf = fw ? `${fw.name}: dominant share ${fmt(fw.dominant_share)}` +
      (fw.ahead.length ? `; DRF serves first ${fw.ahead.map((a) => a.name).join(", ")}` : "") : "";
    box.replaceChildren(
      el("h3", {}, "Why it waits"),
      el("p", { class: "explain-summary" }, e.summary),
      drf ? el("p", { class: "sub" }, drf) : "",
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "agent"), el("th", {}, "fit"), el("th", {}, "why"))), el("tbody", {}, ...rows)));
  } catch {
    // Asked again on the next snapshot.
  }
}

function openDrill() {
  const id = drilledTask();
  if (logView && logView.taskId === id) return;
  stopLogs();
  $("drill-kill-result").textContent = "";
  renderDrill(latest);
  if (id) showLogs(id);
}

function stopLogs() {
  if (!logView) return;
  logView.abort.abort();
  clearTimeout(logView.timer);
  logView = null;
}

function logsUrl(id, follow) {
  return `/api/v1/tasks/${encodeURIComponent(id)}/logs?tail=${LOG_TAIL_LINES}` + (follow ? "&follow=true" : "");
}

// The API's `{"error":{"message"}}`, or the status alone when another server answered.
async function errorText(response) {
  const body = await response.text();
  try { return `${response.status}: ${JSON.parse(body).error.message}`; } catch { return `${response.status} ${response.statusText}`; }
}

function setLogStatus(text) { $("drill-log-status").textContent = text; }

function setLogText(text, append) {
  const pre = $("drill-log");
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const all = (append ? pre.textContent : "") + text;
  pre.textContent = all.length > LOG_CHARS_MAX ? all.slice(all.length - LOG_CHARS_MAX) : all;
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

function showLogs(id) {
  const view = { taskId: id, abort: new AbortController(), timer: null };
  logView = view;
  setLogText("");
  setLogStatus("loading…");
  (polling ? pollLogs : followLogs)(view);
}

function retryLogs(view, load) {
  if (logView === view) view.timer = setTimeout(() => load(view), LOG_RETRY_MS);
}

// Live: one request streaming the output until the task ends; after a refusal (no
// output yet, say) it is asked again.
async function followLogs(view) {
  try {
    const response = await api(logsUrl(view.taskId, true), { signal: view.abort.signal });
    if (!response.ok) {
      setLogStatus(await errorText(response));
      return retryLogs(view, followLogs);
    }
    setLogText("");
    setLogStatus("following");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      if (logView === view) setLogText(chunk.value, true);
    }
    if (logView !== view) return;
    // The server stops following when the task ends, or when its agent stays silent:
    // then, unless the task has ended meanwhile, follow again.
    const task = latest && latest.tasks.find((t) => t.id === view.taskId);
    if (task && !ENDED.includes(task.state)) {
      setLogStatus("following stopped; trying again");
      return retryLogs(view, followLogs);
    }
    setLogStatus("ended");
  } catch (e) {
    if (logView !== view) return;
    setLogStatus(`cannot follow: ${e.message}`);
    retryLogs(view, followLogs);
  }
}

async function pollLogs(view) {
  try {
    const response = await api(logsUrl(view.taskId, false), { signal: view.abort.signal });
    const ok = response.ok, text = ok ? await response.text() : await errorText(response);
    if (logView !== view) return;
    if (ok) setLogText(text);
    setLogStatus(ok ? `as of ${new Date().toLocaleTimeString()}` : text);
  } catch (e) {
    if (logView === view) setLogStatus(`cannot load: ${e.message}`);
  }
  retryLogs(view, pollLogs);
}

async function killTask() {
  const id = drilledTask();
  if (!id || !confirm(`Kill task ${id}?`)) return;
  const result = $("drill-kill-result");
  result.textContent = "killing…";
  try {
    const response = await api(`/api/v1/tasks/${encodeURIComponent(id)}`, { method: "DELETE" });
    result.textContent = response.ok ? "kill sent: its state tells when it ended"
      : response.status === 403 ? `not allowed: your token may not kill tasks (${await errorText(response)})`
      : await errorText(response);
  } catch (e) {
    result.textContent = `cannot kill: ${e.message}`;
  }
}

function closeDrill(e) {
  e.preventDefault();
  history.replaceState(null, "", location.pathname + location.search);
  stopLogs();
  renderDrill(latest);
}

function load() {
  return api("/api/v1/state").then((r) => r.json()).then(render).catch(() => {});
}

function poll() {
  load().then(() => {
    $("live").classList.add("on");
    setTimeout(poll, POLL_MS);
  });
}

// Server-sent events read with fetch (EventSource cannot send the token): one `state`
// event per snapshot; reconnects after RECONNECT_MS when the stream ends or fails.
async function follow() {
  try {
    const response = await api("/api/v1/events", { headers: { Accept: "text/event-stream" } });
    if (!response.ok) throw new Error(`${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      buffered += chunk.value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffered.slice(0, end));
        buffered = buffered.slice(end + 2);
        if (event.name === "state") {
          $("live").classList.add("on");
          render(JSON.parse(event.data));
        }
      }
    }
  } catch {
    // Dropped or refused: shown by the live dot, tried again below.
  }
  $("live").classList.remove("on");
  setTimeout(follow, RECONNECT_MS);
}

// One event's lines: `event: NAME` and `data: ...` (several data lines are joined by
// newlines); comments (`: keep-alive`) and other fields are skipped.
function parseEvent(text) {
  const event = { name: "message", data: [] };
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const field = line.slice(0, colon), value = line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.name = value;
    else if (field === "data") event.data.push(value);
  }
  return { name: event.name, data: event.data.join("\n") };
}

for (const id of ["filter-state", "filter-framework", "filter-agent", "filter-text"]) {
  $(id).addEventListener("input", () => latest && renderTasks(latest));
}
$("jobs").addEventListener("click", (e) => {
  const link = e.target.closest("a[data-search]");
  if (!link) return;
  e.preventDefault();
  $("filter-text").value = link.dataset.search;
  if (latest) renderTasks(latest);
  $("tasks-section").scrollIntoView();
});
$("tasks").addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-task]");
  if (row && !e.target.closest("a")) location.hash = `task=${encodeURIComponent(row.dataset.task)}`;
});
$("drill-close").addEventListener("click", closeDrill);
$("drill-kill").addEventListener("click", killTask);
window.addEventListener("hashchange", openDrill);
window.addEventListener("resize", () => latest && render(latest));

openDrill();
if (polling) {
  poll();
} else {
  load();
  follow();
}
