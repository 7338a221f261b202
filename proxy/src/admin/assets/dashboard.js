// switchyard admin dashboard: live traffic, the dtab editor, the delegator.
// Plain JavaScript served from the binary: no build step, no external assets. Every name shown comes from
// requests (Host headers), so text is only ever inserted with textContent, never as HTML.
"use strict";

const POLL_MS = 1000;
const WINDOW = 10;      // headline numbers cover the last WINDOW polls (about 10 s)
const HISTORY = 60;     // sparklines show the last HISTORY polls

// ---------------------------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------------------------
// Numbers

/** Prometheus' histogram_quantile over bucket deltas: linear interpolation inside the bucket holding the rank. */
function quantile(q, bounds, buckets, count) {
  if (!count || count <= 0) return null;
  const rank = q * count;
  for (let i = 0; i < bounds.length; i++) {
    if (buckets[i] >= rank) {
      const lo = i === 0 ? 0 : bounds[i - 1];
      const before = i === 0 ? 0 : buckets[i - 1];
      const inside = buckets[i] - before;
      return inside > 0 ? lo + (bounds[i] - lo) * (rank - before) / inside : bounds[i];
    }
  }
  return Infinity; // beyond the largest finite bucket
}

function fmtLatency(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "—";
  if (s === Infinity) return "> 10 s";
  if (s < 0.001) return (s * 1000).toFixed(2) + " ms";
  if (s < 1) return (s * 1000).toFixed(s < 0.1 ? 1 : 0) + " ms";
  return s.toFixed(2) + " s";
}
const fmtRate = (r) => (r === null ? "—" : r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2));
const fmtPct = (p) => (p === null ? "—" : (p * 100).toFixed(p >= 0.999 || p === 0 ? 0 : 1) + "%");
const srClass = (p) => (p === null ? "" : p >= 0.99 ? "sr-ok" : p >= 0.95 ? "sr-warn" : "sr-bad");

/** What changed in one series between two snapshots (null when the counters were reset). */
function delta(now, before, bounds, seconds) {
  if (!before) return null;
  const req = now.requests - before.requests;
  if (req < 0 || seconds <= 0) return null;
  const ok = now.success - before.success, bad = now.failure - before.failure;
  const buckets = bounds.map((_, i) => (now.latencyBuckets[i] || 0) - ((before.latencyBuckets || [])[i] || 0));
  const count = now.latencyCount - (before.latencyCount || 0);
  return {
    rps: req / seconds,
    success: ok + bad > 0 ? ok / (ok + bad) : null,
    p50: quantile(0.5, bounds, buckets, count),
    p95: quantile(0.95, bounds, buckets, count),
    p99: quantile(0.99, bounds, buckets, count),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Live traffic

const live = { snaps: [], history: new Map() };

function seriesKey(router, kind, name) { return router + "\u0000" + kind + "\u0000" + name; }

function findSeries(snap, router, kind, name) {
  const r = snap && snap.routers.find((x) => x.label === router);
  return r && r[kind].find((x) => x.name === name);
}

function sparkline(values, color) {
  const w = 120, hgt = 26, n = values.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", hgt);
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  const finite = values.map((v) => (v === null || !Number.isFinite(v) ? 0 : v));
  const max = Math.max(...finite, 1e-9);
  // Until HISTORY points exist the line spans the whole width, so a fresh page already shows a readable trend.
  const step = w / Math.max(n - 1, 1);
  const pts = finite.map((v, i) => [i * step, hgt - 2 - (v / max) * (hgt - 4)]);
  if (pts.length >= 2) {
    const line = pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
    const area = document.createElementNS(svg.namespaceURI, "polygon");
    area.setAttribute("points", `0,${hgt} ${line} ${w},${hgt}`);
    area.setAttribute("fill", color);
    area.setAttribute("fill-opacity", "0.12");
    const pl = document.createElementNS(svg.namespaceURI, "polyline");
    pl.setAttribute("points", line);
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", color);
    pl.setAttribute("stroke-width", "1.5");
    svg.append(area, pl);
  }
  return svg;
}

function recordHistory(snap, prev) {
  const seconds = prev ? (snap.timeMs - prev.timeMs) / 1000 : 0;
  for (const r of snap.routers) {
    for (const kind of ["services", "clients"]) {
      for (const s of r[kind]) {
        const key = seriesKey(r.label, kind, s.name);
        const before = findSeries(prev, r.label, kind, s.name);
        // A series new since the last poll started from zero; with no previous poll there is no rate yet.
        const d = delta(s, before || (prev ? { requests: 0, success: 0, failure: 0 } : null), snap.latencyBounds, seconds);
        if (!d) continue;
        const hist = live.history.get(key) || [];
        hist.push(d);
        while (hist.length > HISTORY) hist.shift();
        live.history.set(key, hist);
      }
    }
  }
}

function statsRow(router, kind, s, windowStart, snap) {
  const seconds = windowStart ? (snap.timeMs - windowStart.timeMs) / 1000 : 0;
  const before = findSeries(windowStart, router, kind, s.name) || (windowStart ? { requests: 0, success: 0, failure: 0 } : null);
  const d = delta(s, before, snap.latencyBounds, seconds) || {};
  const hist = live.history.get(seriesKey(router, kind, s.name)) || [];
  const rate = d.rps === undefined ? null : d.rps, sr = d.success === undefined ? null : d.success;
  const cells = [
    h("td", { class: "name" }, h("code", {}, s.name)),
    h("td", { class: "rps", "data-value": rate === null ? "" : rate.toFixed(3) }, fmtRate(rate)),
    h("td", { class: "spark" }, sparkline(hist.map((x) => x.rps), "#2f6fdb")),
    h("td", { class: "sr " + srClass(sr), "data-value": sr === null ? "" : sr.toFixed(4) }, fmtPct(sr)),
    h("td", { class: "p50" }, fmtLatency(d.p50)),
    h("td", { class: "p95" }, fmtLatency(d.p95)),
    h("td", { class: "p99" }, fmtLatency(d.p99)),
    h("td", { class: "spark" }, sparkline(hist.map((x) => x.p99), "#8b5bd6")),
    h("td", { class: "total", "data-value": s.requests }, s.requests.toLocaleString("en-US")),
  ];
  if (kind === "clients") cells.push(h("td", {}, endpointChips(s.endpoints)));
  return h("tr", { "data-kind": kind, "data-name": s.name }, cells);
}

function endpointChips(eps) {
  if (!eps || eps.length === 0) return h("div", { class: "eps" }, h("span", { class: "ep none" }, "no endpoints"));
  return h("div", { class: "eps" }, eps.map((e) => h("span", {
    class: "ep " + e.state,
    title: `weight ${e.weight} · ${e.inFlight} in flight · ${e.state}` +
      (e.latencyEwmaMs !== undefined ? ` · latency estimate ${e.latencyEwmaMs.toFixed(2)} ms` : ""),
  }, e.addr + (e.state === "dead" ? " · dead" : "") + (e.inFlight ? ` · ${e.inFlight} in flight` : ""))));
}

function statsTable(router, kind, list, windowStart, snap) {
  const head = ["", "req/s", "", "success", "p50", "p95", "p99", "p99 trend", "total"];
  if (kind === "clients") head.push("endpoints");
  head[0] = kind === "services" ? "logical service" : "bound client";
  const rows = list.length
    ? list.map((s) => statsRow(router, kind, s, windowStart, snap))
    : [h("tr", { class: "empty-row" }, h("td", { colspan: head.length }, "no traffic yet"))];
  return h("table", { class: "stats " + kind }, h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))), h("tbody", {}, rows));
}

function routerCard(r, windowStart, snap) {
  const before = windowStart && windowStart.routers.find((x) => x.label === r.label);
  const seconds = windowStart ? (snap.timeMs - windowStart.timeMs) / 1000 : 0;
  const rps = before && seconds > 0 && r.requests >= before.requests ? (r.requests - before.requests) / seconds : null;
  let ok = 0, bad = 0;
  for (const s of r.services) {
    const b = before && before.services.find((x) => x.name === s.name);
    ok += s.success - (b ? b.success : 0);
    bad += s.failure - (b ? b.failure : 0);
  }
  const sr = before && ok + bad > 0 ? ok / (ok + bad) : null;
  const kpi = (label, value, cls) => h("div", { class: "kpi" }, h("b", { class: cls || "" }, value), h("span", {}, label));
  return h("section", { class: "router", "data-router": r.label },
    h("div", { class: "router-head" },
      h("h2", {}, r.label), h("span", { class: "meta" }, `${r.protocol} · dtab generation ${r.dtabGeneration}`),
      h("div", { class: "kpis" },
        kpi("req/s", fmtRate(rps)), kpi("success", fmtPct(sr), srClass(sr)),
        kpi("open conns", r.connectionsOpen), kpi("requests", r.requests.toLocaleString("en-US")))),
    h("h3", {}, "Logical services"), statsTable(r.label, "services", r.services, windowStart, snap),
    h("h3", {}, "Bound clients"), statsTable(r.label, "clients", r.clients, windowStart, snap),
    h("h3", {}, "Dtab ", h("a", { href: "#dtab", "data-router": r.label, onclick: () => { editor.router = r.label; $("dtab-editor").value = ""; } }, "edit")),
    h("pre", { class: "code dtab" }, r.dtab || "(empty)"));
}

/** How long until a Unix time, in words ("in 23 h", "EXPIRED"). */
function fmtUntil(unixSecs, nowMs) {
  const left = unixSecs - nowMs / 1000;
  if (left <= 0) return "EXPIRED";
  return left >= 2 * 86400 ? `in ${Math.floor(left / 86400)} d` : left >= 3600 ? `in ${Math.floor(left / 3600)} h` : `in ${Math.floor(left / 60)} min`;
}

/** This sidecar's identities (what it presents), whom each server admits, and whom each client requires. */
function identityCard(snap) {
  const ids = snap.identities || [];
  const authz = (snap.authorization || []).filter((a) => a.tls);
  const peers = [];
  for (const r of snap.routers) for (const c of r.clients) if (c.peerIdentity) peers.push([r.label, c.name, c.peerIdentity]);
  if (!ids.length && !authz.length && !peers.length) {
    return h("section", { class: "router identity" }, h("h2", {}, "Identity"), h("p", { class: "muted" }, "No TLS: this sidecar presents no identity and its hops are plaintext."));
  }
  const soon = (t) => t - snap.timeMs / 1000 < 6 * 3600;
  return h("section", { class: "router identity" },
    h("h2", {}, "Identity"),
    h("table", { class: "stats" },
      h("thead", {}, h("tr", {}, ["presents", "as", "expires"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ids.map((i) => h("tr", {}, h("td", {}, h("code", {}, i.identity)), h("td", {}, i.use),
        h("td", { class: soon(i.expiresAt) ? "bad" : "" }, fmtUntil(i.expiresAt, snap.timeMs)))))),
    authz.length ? h("h3", {}, "Callers admitted") : null,
    authz.length ? h("ul", {}, authz.map((a) => h("li", {}, `${a.router} :${a.port} — `,
      a.mutual ? (a.allow ? a.allow.map((x) => h("code", {}, x + " ")) : "any client certificate from the mesh CA") : "TLS without client certificates"))) : null,
    peers.length ? h("h3", {}, "Peers required") : null,
    peers.length ? h("ul", {}, peers.map(([router, client, id]) => h("li", {}, `${router}: `, h("code", {}, client), " must prove ", h("code", {}, id)))) : null);
}

function render(snap) {
  const windowStart = live.snaps.length > 1 ? live.snaps[Math.max(0, live.snaps.length - 1 - WINDOW)] : null;
  const root = $("routers");
  root.replaceChildren(identityCard(snap), ...snap.routers.map((r) => routerCard(r, windowStart, snap)));
}

function setLive(ok, text) {
  $("live").className = "live " + (ok ? "ok" : "down");
  $("live-text").textContent = text;
}

async function poll() {
  try {
    const resp = await fetch("/admin/stats.json", { cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const snap = await resp.json();
    const prev = live.snaps[live.snaps.length - 1];
    if (prev && snap.routers.some((r) => { const p = prev.routers.find((x) => x.label === r.label); return p && r.requests < p.requests; })) {
      live.snaps = []; // the sidecar restarted: counters went back to zero
      live.history.clear();
    }
    recordHistory(snap, live.snaps[live.snaps.length - 1]);
    live.snaps.push(snap);
    while (live.snaps.length > WINDOW + 1) live.snaps.shift();
    live.latest = snap;
    render(snap);
    populateRouters(snap);
    setLive(true, "live · " + new Date(snap.timeMs).toLocaleTimeString());
  } catch (e) {
    setLive(false, "no answer from the sidecar (" + e.message + ")");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Dtab editor

const editor = { router: null, baseEtag: null, baseGeneration: null, seq: 0, timer: null, valid: false, changed: false };

function populateRouters(snap) {
  const labels = snap.routers.map((r) => r.label);
  if (!editor.router || !labels.includes(editor.router)) editor.router = labels.includes("egress") ? "egress" : labels[0];
  const pick = $("dtab-routers");
  if (pick.dataset.labels !== labels.join(",")) {
    pick.dataset.labels = labels.join(",");
    pick.replaceChildren(...labels.map((l) => h("button", { "data-router": l, onclick: () => selectRouter(l) }, l)));
    const sel = $("dlg-router");
    sel.replaceChildren(...labels.map((l) => h("option", { value: l }, l)));
    sel.value = editor.router;
  }
  for (const b of pick.children) b.classList.toggle("active", b.dataset.router === editor.router);
  const r = snap.routers.find((x) => x.label === editor.router);
  if (r && !$("dlg-path").value && r.services.length) $("dlg-path").placeholder = r.services[0].name;
}

function selectRouter(label) {
  editor.router = label;
  $("dlg-router").value = label;
  loadCurrent(true);
  for (const b of $("dtab-routers").children) b.classList.toggle("active", b.dataset.router === label);
}

/** Fetches the router's current dtab and version; with `resetDraft`, the editor starts from it. */
async function loadCurrent(resetDraft) {
  if (!editor.router) return;
  const resp = await fetch("/dtab/" + encodeURIComponent(editor.router), { cache: "no-store" });
  const text = await resp.text();
  editor.baseEtag = resp.headers.get("etag");
  $("dtab-current").textContent = text || "(empty)";
  $("dtab-current-meta").textContent = "version " + (editor.baseEtag || "?");
  if (resetDraft) {
    $("dtab-editor").value = text;
    hideBanner();
  }
  validateNow();
}

function renderBackdrop(text, err) {
  const bd = $("editor-backdrop");
  bd.replaceChildren();
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    if (err && i === err.line - 1) {
      const col = Math.max(0, err.column - 1);
      const mark = h("mark", { class: "err-line" }, line.slice(0, col));
      mark.append(h("mark", { class: "err-char" }, line.slice(col, col + 1) || " "), line.slice(col + 1));
      bd.append(mark);
    } else {
      bd.append(line);
    }
    if (i < lines.length - 1) bd.append("\n");
  });
  bd.append("\n");
  bd.scrollTop = $("dtab-editor").scrollTop;
}

function showError(text, body) {
  const status = $("dtab-status");
  const msg = body.error || "invalid dtab";
  const parts = [h("span", { class: "err" }, "✗ " + msg)];
  if (body.line) {
    const line = text.split("\n")[body.line - 1] || "";
    parts.push(h("pre", { class: "err-snippet" }, line + "\n" + " ".repeat(Math.max(0, body.column - 1)) + "^"));
  }
  status.replaceChildren(...parts);
  $("editor-wrap").className = "editor invalid";
  renderBackdrop(text, body.line ? body : null);
}

function renderDiff(lines) {
  const box = $("dtab-diff");
  if (!lines.some((l) => l.op !== "same")) {
    box.replaceChildren(h("p", { class: "muted" }, "No changes: the draft equals the current dtab."));
    return;
  }
  const sign = { add: "+", remove: "−", same: " " };
  box.replaceChildren(...lines.map((l) => h("div", { class: l.op }, h("span", { class: "sign" }, sign[l.op]), l.text)));
}

async function validateNow() {
  const text = $("dtab-editor").value;
  const seq = ++editor.seq;
  let resp, body;
  try {
    resp = await fetch("/dtab/" + encodeURIComponent(editor.router) + "/validate", { method: "POST", body: text });
    body = await resp.json();
  } catch (e) {
    body = { error: "could not reach the sidecar: " + e.message };
  }
  if (seq !== editor.seq) return; // a newer keystroke's answer wins
  editor.valid = !!(resp && resp.ok && body.valid);
  editor.changed = editor.valid && body.changed;
  $("dtab-apply").disabled = !editor.changed;
  if (!editor.valid) {
    showError(text, body);
    $("dtab-diff").replaceChildren(h("p", { class: "muted" }, "Fix the draft to see its diff."));
    return;
  }
  $("editor-wrap").className = "editor valid";
  renderBackdrop(text, null);
  const n = body.dentries;
  const stale = editor.baseEtag && body.current.etag !== editor.baseEtag;
  const parts = [h("span", { class: "ok" }, `✓ valid — ${n} dentr${n === 1 ? "y" : "ies"}` + (body.changed ? ", changes below" : ", no changes"))];
  if (stale) parts.push(h("span", { class: "err" }, " · the dtab changed on the server since you loaded it"));
  $("dtab-status").replaceChildren(...parts);
  renderDiff(body.diff);
}

function scheduleValidate() {
  clearTimeout(editor.timer);
  editor.timer = setTimeout(validateNow, 200);
  renderBackdrop($("dtab-editor").value, null);
}

function banner(kind, ...content) {
  const b = $("dtab-banner");
  b.className = "banner " + kind;
  b.replaceChildren(...content);
  b.hidden = false;
}
function hideBanner() { $("dtab-banner").hidden = true; }

// The admin token for changes: typed once per browser tab, kept in sessionStorage (gone when the tab closes),
// sent as `Authorization: Bearer` with every apply. Reads need none.
const TOKEN_KEY = "switchyard.adminToken";

function loadToken() {
  let saved = "";
  try { saved = sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { /* storage disabled */ }
  $("dtab-token").value = saved;
}

function saveToken() {
  const token = $("dtab-token").value.trim();
  $("dtab-token").classList.remove("needed");
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) { /* storage disabled: the field still works for this page */ }
}

async function apply() {
  const headers = { "content-type": "text/plain" };
  if (editor.baseEtag) headers["if-match"] = editor.baseEtag;
  const token = $("dtab-token").value.trim();
  if (token) headers["authorization"] = "Bearer " + token;
  const resp = await fetch("/dtab/" + encodeURIComponent(editor.router), { method: "PUT", headers, body: $("dtab-editor").value });
  if (resp.status === 204) {
    const etag = resp.headers.get("etag");
    banner("ok", `✓ Applied to ${editor.router}: new requests route with it now (version ${etag}).`);
    await loadCurrent(false);
    return;
  }
  let body = {};
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (resp.status === 412) {
    banner("bad", h("b", {}, "412 Precondition Failed — not applied. "),
      `Someone changed ${editor.router}'s dtab since you loaded it (it is now version ${body.current}). ` +
      "Nothing was changed. Review the new current dtab and the diff, then apply again.",
      h("button", { onclick: () => { hideBanner(); loadCurrent(false); } }, "Diff against the new current dtab"));
  } else if (resp.status === 401) {
    const field = $("dtab-token");
    field.classList.add("needed");
    field.focus();
    banner("bad", h("b", {}, "401 Unauthorized — not applied. "),
      token
        ? "The admin token you entered is not this sidecar's. Nothing was changed. "
        : "This sidecar needs an admin token for changes. Nothing was changed. ",
      "Enter it in the admin token field (the local mesh keeps it in run/admin-token) and apply again.");
  } else {
    banner("bad", `Not applied (HTTP ${resp.status}): ${body.error || "unexpected answer"}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Delegator

/** How a node ends up: "bound", "empty", "neg" or "fail", by docs/dtab.md's rules for alternation and union
 *  ("Delegation", rules 4 and 5). */
function outcome(n) {
  switch (n.type) {
    case "leaf": return "bound";
    case "delegate": return outcome(n.delegate);
    case "alt": {
      for (const c of n.alt) { const o = outcome(c); if (o !== "neg") return o; }
      return "neg";
    }
    case "union": {
      const kept = n.union.map((b) => outcome(b.tree)).filter((o) => o !== "neg" && o !== "fail");
      return kept.length === 0 ? "neg" : kept.includes("bound") ? "bound" : "empty";
    }
    case "exception": return "fail";
    default: return n.type;
  }
}

function leaves(n, out) {
  if (n.type === "leaf") out.push(n.bound);
  if (n.delegate) leaves(n.delegate, out);
  if (n.type === "alt") { const c = n.alt.find((x) => outcome(x) !== "neg"); if (c) leaves(c, out); }
  if (n.union) n.union.forEach((b) => leaves(b.tree, out));
  return out;
}

function treeNode(n, extra, used) {
  const box = h("div", { class: "box" },
    h("div", { class: "row" }, h("span", { class: "badge " + n.type }, n.type), extra, h("span", { class: "path" }, n.path),
      used ? h("span", { class: "badge used" }, "used") : null),
    n.dentry ? h("div", { class: "dentry" }, `via dentry ${n.dentry.prefix} => ${n.dentry.dst}`) : null,
    n.message ? h("div", { class: "dentry" }, n.message) : null,
    n.type === "leaf" ? h("div", { class: "row" }, h("span", { class: "dentry" }, `bound ${n.bound.id}` +
      (n.bound.residual && n.bound.residual !== "/" ? ` residual ${n.bound.residual}` : "")),
      endpointChips(n.bound.endpoints.map((a) => ({ addr: a, state: "active", weight: 1, inFlight: 0 })))) : null);
  const node = h("div", { class: "node " + n.type, "data-type": n.type }, box);
  let kids = [];
  if (n.type === "delegate") kids = [treeNode(n.delegate)];
  if (n.type === "alt") {
    const chosen = n.alt.findIndex((c) => outcome(c) !== "neg");
    kids = n.alt.map((c, i) => {
      const k = treeNode(c, h("span", { class: "weight" }, i === 0 ? "try" : "else"), i === chosen);
      if (chosen >= 0 && i > chosen) k.classList.add("unused");
      if (outcome(c) === "neg") k.classList.add("unused");
      return k;
    });
  }
  if (n.type === "union") kids = n.union.map((b) => treeNode(b.tree, h("span", { class: "weight" }, "weight " + b.weight)));
  if (kids.length) node.append(h("div", { class: "children" }, kids));
  return node;
}

async function explainPath(ev) {
  if (ev) ev.preventDefault();
  const router = $("dlg-router").value, path = $("dlg-path").value.trim() || $("dlg-path").placeholder;
  const useDraft = document.querySelector("input[name=dlg-src]:checked").value === "draft";
  const q = new URLSearchParams({ router, path });
  if (useDraft) q.set("dtab", $("dtab-editor").value);
  const resp = await fetch("/delegator.json?" + q.toString(), { cache: "no-store" });
  const body = await resp.json().catch(() => ({ error: "HTTP " + resp.status }));
  if (!resp.ok) {
    $("dlg-summary").replaceChildren(h("div", { class: "banner bad" }, (useDraft ? "The edited draft: " : "") + (body.error || "failed")));
    $("dlg-tree").replaceChildren();
    return;
  }
  const out = outcome(body.tree);
  const bound = leaves(body.tree, []);
  const eps = bound.flatMap((b) => b.endpoints);
  const words = { bound: "resolves", empty: "binds to no endpoints", neg: "does not resolve (neg)", fail: "fails" };
  $("dlg-summary").replaceChildren(h("div", { class: "summary" },
    h("span", { class: "badge outcome-" + out }, out), h("b", {}, body.path), " " + words[out],
    bound.length ? h("span", {}, " to ", h("code", {}, bound.map((b) => b.id).join(", "))) : null,
    bound.length ? h("span", { class: "muted" }, ` → ${eps.length} endpoint${eps.length === 1 ? "" : "s"}`) : null,
    h("span", { class: "muted" }, ` · router ${body.router}, ${useDraft ? "edited draft" : "current dtab"}`)));
  $("dlg-tree").replaceChildren(treeNode(body.tree));
}

// ---------------------------------------------------------------------------------------------------------------
// Tabs and start-up

function showTab() {
  let tab = (location.hash || "").slice(1);
  if (!tab) tab = location.pathname.replace(/^\//, "") === "delegator" ? "delegator" : "traffic";
  if (!["traffic", "dtab", "delegator"].includes(tab)) tab = "traffic";
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== "tab-" + tab;
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.tab === tab);
  if (tab === "dtab") loadCurrent(!$("dtab-editor").value);
}

function start() {
  $("host").textContent = location.host;
  document.title = "switchyard · " + location.host;
  $("dtab-editor").addEventListener("input", scheduleValidate);
  $("dtab-editor").addEventListener("scroll", () => { $("editor-backdrop").scrollTop = $("dtab-editor").scrollTop; });
  $("dtab-apply").addEventListener("click", apply);
  loadToken();
  $("dtab-token").addEventListener("input", saveToken);
  $("dtab-reset").addEventListener("click", () => loadCurrent(true));
  $("dtab-try").addEventListener("click", () => {
    document.querySelector("input[name=dlg-src][value=draft]").checked = true;
    $("dlg-router").value = editor.router;
    location.hash = "#delegator";
    explainPath();
  });
  $("dlg-form").addEventListener("submit", explainPath);
  $("dlg-router").addEventListener("change", () => { editor.router = $("dlg-router").value; });
  window.addEventListener("hashchange", showTab);
  const params = new URLSearchParams(location.search);
  if (params.get("path")) $("dlg-path").value = params.get("path");
  poll().then(() => {
    showTab();
    if (params.get("router")) $("dlg-router").value = params.get("router");
    if (params.get("path")) explainPath();
  });
}

start();
