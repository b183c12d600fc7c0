// The dashboard: every figure comes from the server's JSON endpoints under /agent.
"use strict";

// ---------------------------------------------------------------------------------------------
// API client: bearer token, JSON in and out, errors as {error, message, hint, status}
// ---------------------------------------------------------------------------------------------

const TOKEN_KEY = "agent-dashboard-token";

// A token given as ?token=T is kept for the tab and taken out of the address bar, so that it
// does not end up in the browser's history or in a shared link.
function takeToken() {
  const url = new URL(window.location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(body, status) {
    super(body.message || body.error || `HTTP ${status}`);
    this.kind = body.error || "error";
    this.hint = body.hint || null;
    this.status = body.status || status;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError({ error: "network", message: `Cannot reach the server (${err.message}).`,
                         hint: "Is `agent serve` still running?" }, 0);
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    if (response.ok) throw new ApiError({ error: "bad_response", message: `${path}: the answer is not JSON.` }, response.status);
  }
  if (!response.ok) throw new ApiError(data || { message: `${method} ${path}: HTTP ${response.status}` }, response.status);
  return data;
}

const get = (path) => api("GET", path);
const post = (path, body) => api("POST", path, body);
const threadPath = (id, tail) => `/agent/threads/${encodeURIComponent(id)}/${tail}`;

// ---------------------------------------------------------------------------------------------
// Error banner: an error from a user's action stays until dismissed; one from polling goes
// away by itself once polling works again.
// ---------------------------------------------------------------------------------------------

let bannerSource = null;

function showError(err, source = "action") {
  const banner = document.getElementById("error-banner");
  document.getElementById("error-message").textContent = err.message || String(err);
  document.getElementById("error-hint").textContent = err.hint || "";
  banner.dataset.kind = err.kind || "error";
  banner.hidden = false;
  bannerSource = source;
}

function clearError(source) {
  if (source && bannerSource !== source) return;
  document.getElementById("error-banner").hidden = true;
  bannerSource = null;
}

// ---------------------------------------------------------------------------------------------
// DOM and formatting helpers
// ---------------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

function fmtTokens(n) {
  n = num(n);
  if (n === null) return "–";
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

function fmtCost(usd) {
  usd = num(usd);
  if (usd === null) return "cost unknown";
  return usd >= 1 ? `$${usd.toFixed(2)}` : `$${usd.toFixed(4)}`;
}

function fmtDuration(seconds) {
  seconds = num(seconds);
  if (seconds === null) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

const shortId = (id) => (id ? String(id).slice(0, 8) : "");
const fmtValue = (v) => (typeof v === "string" ? v : JSON.stringify(v));

// ---------------------------------------------------------------------------------------------
// Progress bar: done of total, with rate, ETA, tokens and cost
// ---------------------------------------------------------------------------------------------

// The server names the rate per minute and the ETA in seconds; the CLI's figures (`rate` per
// second, `eta`) are read as well.
function progressFigures(p) {
  const rate = num(p.rate_per_minute) ?? (num(p.rate) !== null ? p.rate * 60 : null);
  return { done: num(p.done) ?? 0, total: num(p.total) ?? 0, failed: num(p.failed) ?? 0, rate,
           eta: num(p.eta_seconds) ?? num(p.eta), input: p.input_tokens, output: p.output_tokens, cost: p.cost_usd };
}

function progressBar(progress) {
  const wrap = el("div", { class: "progress" });
  const bar = el("div", { class: "bar", role: "progressbar", "data-testid": "progress-bar", "aria-valuemin": "0" },
                 el("div", { class: "fill" }));
  const label = el("div", { class: "progress-label", "data-testid": "progress-label" });
  wrap.append(bar, label);
  updateProgressBar(wrap, progress);
  return wrap;
}

function updateProgressBar(wrap, progress) {
  const f = progressFigures(progress);
  const bar = wrap.querySelector(".bar");
  bar.setAttribute("aria-valuenow", String(f.done));
  bar.setAttribute("aria-valuemax", String(f.total));
  const pct = f.total > 0 ? Math.min(100, (100 * f.done) / f.total) : 0;
  bar.querySelector(".fill").style.width = `${pct}%`;
  bar.classList.toggle("has-failed", f.failed > 0);
  const parts = [`${f.done}/${f.total}`];
  if (f.failed) parts.push(`${f.failed} failed`);
  if (f.rate !== null) parts.push(`${f.rate.toFixed(1)}/min`);
  if (f.eta !== null && f.done < f.total) parts.push(`ETA ${fmtDuration(f.eta)}`);
  parts.push(`${fmtTokens(f.input)} in · ${fmtTokens(f.output)} out`, fmtCost(f.cost));
  wrap.querySelector(".progress-label").textContent = parts.join(" · ");
}

// ---------------------------------------------------------------------------------------------
// Thread list: filters, rows updated in place, polled every second while anything runs
// ---------------------------------------------------------------------------------------------

const ACTIVE = new Set(["running", "queued"]);
const FAST_POLL_MS = 1000;
const SLOW_POLL_MS = 5000;
const knownGraphs = new Set();
const rows = new Map(); // thread id -> <tr>
let selectedThread = null;
let pollTimer = null;

function threadQuery() {
  const params = new URLSearchParams();
  const status = document.getElementById("status-filter").value;
  const graph = document.getElementById("graph-filter").value;
  if (status) params.set("status", status);
  if (graph) params.set("graph", graph);
  const query = params.toString();
  return query ? `/agent/threads?${query}` : "/agent/threads";
}

function noteGraphs(threads) {
  const select = document.getElementById("graph-filter");
  for (const t of threads) {
    if (t.graph && !knownGraphs.has(t.graph)) {
      knownGraphs.add(t.graph);
      select.append(el("option", { value: t.graph, text: t.graph }));
    }
  }
}

function fillRow(tr, t) {
  tr.dataset.status = t.status;
  tr.dataset.graph = t.graph || "";
  const cells = tr.children;
  cells[1].textContent = t.graph || "";
  cells[2].replaceChildren(el("span", { class: `status status-${t.status}`, "data-testid": "thread-status", text: t.status }));
  if (t.error) cells[2].append(el("div", { class: "error-text", text: t.error }));
  cells[3].textContent = t.steps ?? "";
  const existing = cells[4].querySelector(".progress");
  if (t.progress && existing) updateProgressBar(existing, t.progress);
  else cells[4].replaceChildren(t.progress ? progressBar(t.progress) : "");
  const spend = t.spend || {};
  cells[5].textContent = `${fmtTokens((spend.input_tokens || 0) + (spend.output_tokens || 0))} tok · ${fmtCost(spend.cost_usd)}`;
  cells[6].textContent = fmtTime(t.updated_at);
  tr.classList.toggle("selected", t.thread_id === selectedThread);
}

function newRow(t) {
  const tr = el("tr", { "data-testid": "thread-row", "data-thread-id": t.thread_id, tabindex: "0",
                        onclick: () => selectThread(t.thread_id),
                        onkeydown: (e) => { if (e.key === "Enter") selectThread(t.thread_id); } },
                el("td", {}, el("code", { text: t.thread_id })), el("td"), el("td"), el("td"), el("td"), el("td"), el("td"));
  return tr;
}

function renderThreads(threads) {
  const body = document.getElementById("thread-rows");
  const seen = new Set();
  threads.forEach((t, index) => {
    seen.add(t.thread_id);
    let tr = rows.get(t.thread_id);
    if (!tr) rows.set(t.thread_id, (tr = newRow(t)));
    fillRow(tr, t);
    if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
  });
  for (const [id, tr] of rows) {
    if (!seen.has(id)) { tr.remove(); rows.delete(id); }
  }
  document.getElementById("threads-empty").hidden = threads.length > 0;
}

async function refreshThreads() {
  const query = threadQuery();
  const data = await get(query);
  const threads = data.threads || [];
  if (query !== threadQuery()) return true; // the filters changed meanwhile: the next poll is theirs
  noteGraphs(threads);
  renderThreads(threads);
  return threads.some((t) => ACTIVE.has(t.status));
}

// One loop refreshes the list and the open thread: every second while something runs (in the
// list or the open thread), every five seconds otherwise.
async function poll() {
  clearTimeout(pollTimer);
  let busy = false;
  try {
    busy = await refreshThreads();
    if (selectedThread) busy = (await refreshDetail()) || busy;
    clearError("poll");
  } catch (err) {
    showError(err, "poll");
  }
  document.getElementById("poll-state").textContent = busy ? "live · every 1 s" : "idle · every 5 s";
  clearTimeout(pollTimer); // a poll started meanwhile (a filter, a button) must not leave two loops
  pollTimer = setTimeout(poll, busy ? FAST_POLL_MS : SLOW_POLL_MS);
}

// ---------------------------------------------------------------------------------------------
// Thread detail: status, facts, progress, controls
// ---------------------------------------------------------------------------------------------

let detailStatus = null; // the status last shown, to reload history and approvals when it changes
let detailCheckpoint = null;
let followLatest = true; // the state shown is the newest checkpoint's until one is clicked

function selectThread(id) {
  selectedThread = id;
  detailStatus = null;
  detailCheckpoint = null;
  followLatest = true;
  compare.length = 0;
  for (const [rowId, tr] of rows) tr.classList.toggle("selected", rowId === id);
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-thread-id").textContent = id;
  document.getElementById("control-message").textContent = "";
  document.getElementById("state-view").textContent = "";
  document.getElementById("state-title").textContent = "";
  document.getElementById("diff-view").replaceChildren();
  document.getElementById("diff-title").textContent = "";
  refreshDetail().catch((err) => showError(err));
}

function renderFacts(s) {
  const facts = [
    ["graph", s.graph], ["steps", s.steps], ["created", fmtTime(s.created_at)], ["updated", fmtTime(s.updated_at)],
    ["checkpoint", s.checkpoint_id ? shortId(s.checkpoint_id) : null],
    ["model", s.settings && s.settings.model],
    ["runner", s.runner ? [s.runner.pid, s.runner.host].filter(Boolean).join(" @ ") : null],
    ["spend", s.spend ? `${fmtTokens(s.spend.input_tokens)} in · ${fmtTokens(s.spend.output_tokens)} out · ${fmtCost(s.spend.cost_usd)}` : null],
    ["budget", s.spend && (s.spend.max_cost || s.spend.max_tokens)
      ? [s.spend.max_cost ? fmtCost(s.spend.max_cost) : null, s.spend.max_tokens ? `${fmtTokens(s.spend.max_tokens)} tok` : null].filter(Boolean).join(" · ") : null],
    ["error", s.error],
  ];
  document.getElementById("detail-facts").replaceChildren(
    ...facts.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-fact": k, text: String(v) })]));
}

// Returns whether the thread is running, for the polling rate.
async function refreshDetail() {
  const id = selectedThread;
  const s = await get(threadPath(id, "status"));
  if (id !== selectedThread) return false;
  const status = document.getElementById("detail-status");
  status.textContent = s.status;
  status.className = `status status-${s.status}`;
  renderFacts(s);
  const holder = document.getElementById("detail-progress");
  const existing = holder.querySelector(".progress");
  if (s.progress && existing) updateProgressBar(existing, s.progress);
  else holder.replaceChildren(s.progress ? progressBar(s.progress) : "");
  // History and approvals change when the thread moves on: reload them then, not every second.
  if (s.status !== detailStatus || s.checkpoint_id !== detailCheckpoint || ACTIVE.has(s.status)) {
    detailStatus = s.status;
    detailCheckpoint = s.checkpoint_id;
    await Promise.all([loadApprovals(id), loadHistory(id)]);
  }
  return ACTIVE.has(s.status);
}

async function control(action) {
  const id = selectedThread;
  const message = document.getElementById("control-message");
  try {
    const answer = await post(threadPath(id, action), {});
    message.textContent = answer.message || `${action}: ${answer.status}`;
    clearError("action");
    detailStatus = null;
    await poll();
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------------------------------------
// Approvals: each pending action with approve / reject, a reason ("why") and a name ("who")
// ---------------------------------------------------------------------------------------------

const WHO_KEY = "agent-dashboard-who";
const drafts = new Map(); // approval id -> what was typed, kept if the list is drawn again meanwhile
// Approval id -> "approve" / "reject": an answer is queued for the thread's next run, so the
// server lists the approval until a worker has gone on; it is shown as answered until then.
const answered = new Map();

async function loadApprovals(id) {
  const holder = document.getElementById("approvals");
  let data;
  try {
    data = await get(threadPath(id, "approvals"));
  } catch (err) {
    // A thread of a graph without approvals may answer 404 or 409: nothing to approve.
    if (err.status === 404 || err.status === 409) data = { approvals: [] };
    else throw err;
  }
  if (id !== selectedThread) return;
  const approvals = data.approvals || [];
  const signature = approvals.map((a) => `${a.id}:${answered.get(a.id) || ""}`).join(",");
  if (holder.dataset.signature === `${id}|${signature}`) return; // the same cards: keep their focus
  holder.dataset.signature = `${id}|${signature}`;
  holder.replaceChildren(approvals.length ? "" : el("p", { class: "muted", "data-testid": "no-approvals", text: "Nothing waits for approval." }));
  for (const a of approvals) holder.append(approvalCard(id, a));
}

function approvalCard(threadId, a) {
  const details = el("dl", { class: "facts" },
    Object.entries(a).filter(([k]) => k !== "id")
      .flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: k.endsWith("_at") ? fmtTime(v) : fmtValue(v) })]));
  const draft = drafts.get(a.id) || {};
  const keep = () => drafts.set(a.id, { reason: reason.value, by: who.value });
  const reason = el("input", { type: "text", "data-testid": "reason-input", placeholder: "why (needed to reject)", "aria-label": "reason",
                               value: draft.reason ?? "", oninput: () => keep() });
  const who = el("input", { type: "text", "data-testid": "by-input", placeholder: "who", "aria-label": "who",
                            value: draft.by ?? localStorage.getItem(WHO_KEY) ?? "", oninput: () => keep() });
  const answer = (verb) => async () => {
    if (verb === "reject" && !reason.value.trim()) {
      showError({ message: "A rejection needs a reason.", hint: "Say why in the 'why' field, then reject again." });
      reason.focus();
      return;
    }
    if (who.value.trim()) localStorage.setItem(WHO_KEY, who.value.trim());
    card.classList.add("busy");
    try {
      const body = { ids: [a.id], reason: reason.value.trim() || null, by: who.value.trim() || null };
      const result = await post(threadPath(threadId, verb), body);
      document.getElementById("control-message").textContent = result.message || `${verb}d: ${result.status || ""}`;
      clearError("action");
      drafts.delete(a.id);
      answered.set(a.id, verb);
      detailStatus = null;
      await poll();
    } catch (err) {
      card.classList.remove("busy");
      showError(err);
    }
  };
  const done = answered.get(a.id);
  const card = el("div", { class: `approval${done ? " answered" : ""}`, "data-testid": "approval", "data-approval-id": a.id,
                           "data-answered": done || null },
    el("div", { class: "approval-id" }, "id ", el("code", { text: a.id })),
    details,
    done ? el("p", { class: "muted", text: `${done === "approve" ? "Approved" : "Rejected"}: the thread goes on with the answer.` }) :
    el("div", { class: "approval-form" }, reason, who,
      el("button", { type: "button", "data-testid": "approve-button", onclick: answer("approve") }, "Approve"),
      el("button", { type: "button", class: "danger", "data-testid": "reject-button", onclick: answer("reject") }, "Reject")));
  return card;
}

// ---------------------------------------------------------------------------------------------
// History tree: checkpoints newest first, one row each, drawn in their branch's lane with an
// edge to their parent; a fork runs in a lane of its own and joins its fork point
// ---------------------------------------------------------------------------------------------

const ROW_H = 28;
const LANE_W = 18;
const compare = []; // up to two checkpoint ids, in the order picked

const laneX = (lane) => LANE_W / 2 + 4 + lane * LANE_W;
const branchClass = (branch) => `branch-${branch % 6}`;

async function loadHistory(id) {
  const data = await get(threadPath(id, "history"));
  if (id !== selectedThread) return;
  const checkpoints = data.checkpoints || [];
  renderHistory(checkpoints);
  if (followLatest && checkpoints.length && checkpoints[0].checkpoint_id !== shownCheckpoint) showState(checkpoints[0].checkpoint_id);
}

function historyGraphic(checkpoints) {
  const lanes = Math.max(1, ...checkpoints.map((c) => (num(c.lane) ?? 0) + 1));
  const width = laneX(lanes - 1) + LANE_W / 2 + 4;
  const height = checkpoints.length * ROW_H;
  const index = new Map(checkpoints.map((c, i) => [c.checkpoint_id, i]));
  const drawing = svg("svg", { class: "history-lines", width, height, viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true" });
  checkpoints.forEach((c, i) => {
    const parent = index.get(c.parent_checkpoint_id ?? c.parent_id);
    if (parent === undefined) return;
    const p = checkpoints[parent];
    const [x1, y1, x2, y2] = [laneX(c.lane ?? 0), i * ROW_H + ROW_H / 2, laneX(p.lane ?? 0), parent * ROW_H + ROW_H / 2];
    // Down the child's lane, then across to the parent just above it: a branch joining its fork point.
    const bend = Math.max(y1, y2 - ROW_H / 2);
    const d = x1 === x2 ? `M${x1},${y1} L${x2},${y2}` : `M${x1},${y1} L${x1},${bend} Q${x1},${y2} ${x2},${y2}`;
    drawing.append(svg("path", { d, class: `edge ${branchClass(c.branch ?? 0)}` }));
  });
  checkpoints.forEach((c, i) => {
    drawing.append(svg("circle", { cx: laneX(c.lane ?? 0), cy: i * ROW_H + ROW_H / 2, r: 5,
                                   class: `node ${branchClass(c.branch ?? 0)}`, "data-checkpoint-id": c.checkpoint_id }));
  });
  return { drawing, width };
}

function renderHistory(checkpoints) {
  const holder = document.getElementById("history");
  const { drawing, width } = historyGraphic(checkpoints);
  const list = el("ol", { class: "history-rows" });
  list.style.paddingLeft = `${width + 6}px`; // through the CSSOM: the page's CSP refuses style attributes
  for (const c of checkpoints) {
    const id = c.checkpoint_id;
    const tick = el("input", { type: "checkbox", "data-testid": "compare-checkbox", "aria-label": "compare",
                               onclick: (e) => { e.stopPropagation(); toggleCompare(id); } });
    tick.checked = compare.includes(id);
    const nodes = (c.writers || []).join(", ") || "–";
    const next = (c.next || []).join(", ");
    list.append(el("li", {
      class: `history-node ${branchClass(c.branch ?? 0)}`, "data-testid": "history-node", "data-checkpoint-id": id,
      "data-branch": c.branch ?? 0, "data-lane": c.lane ?? 0, "data-step": c.step, tabindex: "0",
      title: `${id}\nparent ${c.parent_checkpoint_id ?? c.parent_id ?? "none"}\n${fmtTime(c.created_at)}`,
      onmousedown: (e) => { if (e.shiftKey) e.preventDefault(); }, // a shift-click picks, it does not select text
      onclick: (e) => (e.shiftKey ? toggleCompare(id) : pickState(id)),
      onkeydown: (e) => { if (e.key === "Enter") pickState(id); },
    }, tick, el("span", { class: "step", text: `${c.step}` }), el("code", { text: shortId(id) }),
       el("span", { class: "source", text: c.source || "" }),
       el("span", { class: "writers", text: next ? `${nodes} → ${next}` : nodes }),
       (c.branch ?? 0) !== 0 ? el("span", { class: "branch-tag", text: `branch ${c.branch}` }) : null));
  }
  holder.replaceChildren(drawing, list);
  markHistory();
}

function markHistory() {
  for (const node of document.querySelectorAll("#history [data-testid=history-node]")) {
    const id = node.dataset.checkpointId;
    node.classList.toggle("current", id === shownCheckpoint);
    node.classList.toggle("compared", compare.includes(id));
    node.querySelector("input").checked = compare.includes(id);
  }
}

// ---------------------------------------------------------------------------------------------
// State of one checkpoint, and the diff between two
// ---------------------------------------------------------------------------------------------

let shownCheckpoint = null;

function pickState(checkpointId) {
  followLatest = false;
  showState(checkpointId);
}

async function showState(checkpointId) {
  const id = selectedThread;
  shownCheckpoint = checkpointId;
  markHistory();
  try {
    const s = await get(`${threadPath(id, "state")}?checkpoint=${encodeURIComponent(checkpointId)}`);
    if (id !== selectedThread || checkpointId !== shownCheckpoint) return;
    document.getElementById("state-title").textContent =
      `step ${s.step} · ${shortId(s.checkpoint_id)}${s.next && s.next.length ? ` · next: ${s.next.join(", ")}` : ""}`;
    const view = document.getElementById("state-view");
    view.dataset.checkpointId = s.checkpoint_id;
    const shown = { values: s.values };
    if (s.tasks && s.tasks.length) shown.tasks = s.tasks;
    view.textContent = JSON.stringify(shown, null, 2);
  } catch (err) {
    showError(err);
  }
}

function toggleCompare(checkpointId) {
  const at = compare.indexOf(checkpointId);
  if (at >= 0) compare.splice(at, 1);
  else {
    compare.push(checkpointId);
    if (compare.length > 2) compare.shift();
  }
  markHistory();
  if (compare.length === 2) showDiff();
  else {
    document.getElementById("diff-view").replaceChildren(el("p", { class: "muted", text: "Pick one more checkpoint to compare." }));
    document.getElementById("diff-title").textContent = "";
  }
}

// The older of the two picked checkpoints is "before": the tree is newest first.
function orderedPair() {
  const order = [...document.querySelectorAll("#history [data-testid=history-node]")].map((n) => n.dataset.checkpointId);
  return [...compare].sort((a, b) => order.indexOf(b) - order.indexOf(a));
}

// RFC 6902's names and the CLI's.
const ADDED = new Set(["add", "added"]);
const REMOVED = new Set(["remove", "removed"]);

async function showDiff() {
  const id = selectedThread;
  const [before, after] = orderedPair();
  try {
    const d = await get(`${threadPath(id, "diff")}?before=${encodeURIComponent(before)}&after=${encodeURIComponent(after)}`);
    if (id !== selectedThread) return;
    document.getElementById("diff-title").textContent = `${shortId(before)} → ${shortId(after)}`;
    const changes = d.changes || [];
    const table = el("table", { class: "grid diff", "data-testid": "diff-table" },
      el("thead", {}, el("tr", {}, el("th", { text: "op" }), el("th", { text: "path" }), el("th", { text: "old" }), el("th", { text: "new" }))),
      el("tbody", {}, changes.map((c) => el("tr", { class: `op-${c.op}`, "data-testid": "diff-change", "data-op": c.op, "data-path": c.path },
        el("td", { text: c.op }), el("td", {}, el("code", { text: c.path })),
        el("td", { class: "old", text: ADDED.has(c.op) || !("old" in c) ? "" : fmtValue(c.old) }),
        el("td", { class: "new", text: REMOVED.has(c.op) ? "" : "value" in c ? fmtValue(c.value) : "new" in c ? fmtValue(c.new) : "" })))));
    document.getElementById("diff-view").replaceChildren(
      changes.length ? table : el("p", { class: "muted", "data-testid": "diff-empty", text: "No changes." }));
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------------------------------------
// Schedules, spend charts, workers (refreshed every 10 s: they change slowly)
// ---------------------------------------------------------------------------------------------

async function loadSchedules() {
  const data = await get("/agent/schedules");
  const body = document.getElementById("schedule-rows");
  const schedules = data.schedules || [];
  body.replaceChildren(...schedules.map((s) => {
    const next = (s.next_runs || [])[0] || {};
    return el("tr", { "data-testid": "schedule-row", "data-schedule": s.name },
      el("td", {}, el("code", { text: s.name })), el("td", { text: s.graph || "" }), el("td", {}, el("code", { text: s.cron || "" })),
      el("td", { text: s.tz || "UTC" }),
      el("td", { "data-testid": "schedule-status", text: s.status || (s.paused ? "paused" : "active") },
        s.pause_reason ? el("div", { class: "error-text", text: s.pause_reason }) : null),
      el("td", { "data-testid": "next-run-local", text: next.at_local || "–" }),
      el("td", { "data-testid": "next-run-utc", text: next.at_utc || "–" }));
  }));
  if (!schedules.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "muted", text: "No schedules." })));
}

// A small line chart of cost over time, with the points marked.
function spendChart(title, points, attrs) {
  const W = 240, H = 70, PAD = 6;
  const pts = points.map((p) => ({ t: Date.parse(p.at), c: num(p.cost_usd) ?? 0, tokens: p.tokens }))
    .filter((p) => !Number.isNaN(p.t)).sort((a, b) => a.t - b.t);
  const chart = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "spark", role: "img",
                             "aria-label": `${title}: cost over time` });
  chart.append(svg("line", { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: "axis" }));
  if (pts.length) {
    const [t0, t1] = [pts[0].t, pts[pts.length - 1].t];
    const cmax = Math.max(...pts.map((p) => p.c)) || 1;
    const x = (t) => (t1 === t0 ? W / 2 : PAD + ((t - t0) / (t1 - t0)) * (W - 2 * PAD));
    const y = (c) => H - PAD - (c / cmax) * (H - 2 * PAD);
    chart.append(svg("polyline", { points: pts.map((p) => `${x(p.t)},${y(p.c)}`).join(" "), class: "line" }));
    for (const p of pts) {
      const dot = svg("circle", { cx: x(p.t), cy: y(p.c), r: 2.5, class: "dot" });
      const tip = svg("title", {});
      tip.textContent = `${fmtTime(new Date(p.t).toISOString())}: ${fmtCost(p.c)}, ${fmtTokens(p.tokens)} tokens`;
      dot.append(tip);
      chart.append(dot);
    }
  }
  const last = pts[pts.length - 1];
  return el("figure", { class: "chart", "data-testid": "spend-chart", ...attrs }, chart,
    el("figcaption", {}, el("code", { text: title }),
      el("span", { class: "muted", text: last ? ` ${fmtCost(last.c)} · ${pts.length} point${pts.length === 1 ? "" : "s"}` : " no spend yet" })));
}

async function loadSpend() {
  const data = await get("/agent/spend");
  const charts = [
    ...(data.threads || []).map((t) => spendChart(t.thread_id, t.points || [], { "data-thread-id": t.thread_id, "data-kind": "thread" })),
    ...(data.schedules || []).map((s) => spendChart(`schedule ${s.name}`, s.points || [], { "data-schedule": s.name, "data-kind": "schedule" })),
  ];
  document.getElementById("spend-charts").replaceChildren(...(charts.length ? charts : [el("p", { class: "muted", text: "No spend recorded." })]));
}

async function loadWorkers() {
  const data = await get("/agent/workers");
  const workers = data.workers || [];
  const holder = document.getElementById("worker-table");
  if (!workers.length) return holder.replaceChildren(el("p", { class: "muted", text: "No workers." }));
  const keys = [...new Set(workers.flatMap((w) => Object.keys(w)))];
  holder.replaceChildren(el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, keys.map((k) => el("th", { text: k })))),
    el("tbody", {}, workers.map((w) => el("tr", { "data-testid": "worker-row" },
      keys.map((k) => el("td", { text: w[k] === null || w[k] === undefined ? "" : fmtValue(w[k]) })))))));
}

async function refreshOverview() {
  const results = await Promise.allSettled([loadSchedules(), loadSpend(), loadWorkers()]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) showError(failed.reason, "overview");
  else clearError("overview");
}

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

function start() {
  takeToken();
  document.getElementById("error-close").addEventListener("click", () => clearError());
  for (const id of ["status-filter", "graph-filter"]) document.getElementById(id).addEventListener("change", poll);
  for (const action of ["pause", "resume", "cancel"]) {
    document.getElementById(`${action}-button`).addEventListener("click", () => control(action));
  }
  poll();
  refreshOverview();
  setInterval(refreshOverview, 10000);
}

document.addEventListener("DOMContentLoaded", start);
