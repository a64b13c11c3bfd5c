// chatforge studio: one page per stage. State lives on the server (the workspace); the URL hash says which
// page and run are shown, so a reload shows the same thing. Every text comes from the message catalog.
"use strict";
const $ = (id) => document.getElementById(id);
let T = {};                 // the message catalog of the current language
let STATE = {};             // /api/state
let SCHEMA = null;          // the train form, from TrainConfig
let runStream = null;       // EventSource of the run shown
const HEADER = { "X-Chatforge-Studio": "1" };

function lang() {
  const q = new URLSearchParams(location.search).get("lang");
  if (q === "zh" || q === "en") return q;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}
function t(key, vars) {
  let s = T[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", v);
  return s;
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
function notice(text, bad) {
  const n = $("notice"); n.textContent = text || ""; n.className = bad ? "error" : "ok";
}
async function api(method, path, body, raw) {
  const opts = { method, headers: { ...HEADER } };
  if (raw !== undefined) opts.body = raw;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const msg = (data.error && data.error.message) || r.statusText;
    const err = new Error(msg); err.field = data.error && data.error.field; err.status = r.status; throw err;
  }
  return data;
}
async function guarded(fn) {
  try { notice(""); await fn(); } catch (e) { notice(t("error") + ": " + e.message, true); }
}

// ---- pages and language ------------------------------------------------------------------------------------
function applyCatalog() {
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll("[data-i18n-title]")) e.title = t(e.dataset.i18nTitle);
}
function route() {
  const [page, arg] = (location.hash.slice(1) || "data").split("/");
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", b.dataset.page === page);
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "page-" + page;
  if (page === "runs") showRuns(arg ? decodeURIComponent(arg) : null);
  if (page === "train") buildForm();  // the model and data pickers show what the workspace has now
}
async function refresh() {
  STATE = await api("GET", "/api/state");
  const files = STATE.data_files.map((f) => f.path);
  fill($("data-file"), files); fill($("data-eval"), [""].concat(files)); fill($("eval-data"), files);
  const finished = STATE.runs.filter((r) => r.has_final).map((r) => r.name);
  fill($("eval-run"), finished); fill($("export-run"), finished);
  const names = STATE.runs.map((r) => r.name); fill($("diff-a"), names); fill($("diff-b"), names);
  const models = STATE.models.map((m) => m.value);
  fill($("chat-model"), models); fill($("chat-compare"), [""].concat(models)); fill($("data-model"), models);
  if (!files.length) $("data-report").replaceChildren(el("p", { id: "data-none", text: t("data.none") }));
  else if ($("data-none")) $("data-none").remove();  // the first upload: the placeholder is no longer true
}
function fill(select, values) {
  const keep = select.value;
  select.replaceChildren(...values.map((v) => el("option", { value: v, text: v || "—" })));
  if (values.includes(keep)) select.value = keep;
}

// ---- data ----------------------------------------------------------------------------------------------------
async function upload(file) {
  const r = await api("PUT", "/api/data/" + encodeURIComponent(file.name), undefined, file);
  notice(t("data.uploaded", { path: r.path }));
  await refresh(); $("data-file").value = r.path;
}
async function check() {
  const out = $("data-report");
  out.replaceChildren(el("p", { text: t("data.checking") }));
  const body = { file: $("data-file").value };
  if ($("data-eval").value) body.eval_file = $("data-eval").value;
  if ($("data-model").value) body.model = $("data-model").value;
  if ($("data-columns").value.trim()) body.columns = $("data-columns").value.trim();
  const r = await api("POST", "/api/check", body);
  if (r.error) return checkFailed(out, r.error);  // the check itself could not run (e.g. a bad column mapping)
  const s = r.stats || {};
  const fmts = [...new Set(Object.values(r.formats || {}))].join(", ");
  const facts = [[t("data.format"), fmts + " (" + r.kind + ")"], [t("data.rows"), r.rows],
    ...(r.columns ? [[t("data.columns"), Object.entries(r.columns).map(([k, v]) => k + " = " + v.join(" + ")).join(", ")]] : []),
    [t("data.errors"), r.errors], [t("data.warnings"), r.warnings]];
  if (s.examples !== undefined) {
    facts.push([t("data.examples"), s.examples], [t("data.tokens"), s.tokens_total + " / " + s.tokens_trained]);
    if (s.length) facts.push([t("data.length"), [s.length.min, s.length.p50, s.length.p90, s.length.max].join(" / ")]);
  }
  if (r.estimate) facts.push([t("data.estimate"), Math.round(r.estimate.epoch_seconds) + " s"]);
  const rows = (r.problems || []).slice(0, 200).map((p) => el("tr", {},
    el("td", { text: p.file.split("/").pop() + ":" + p.line + (p.record == null ? "" : " #" + p.record) }), el("td", { text: p.severity + " " + p.class }),
    el("td", { text: p.message })));
  out.replaceChildren(
    el("p", { class: r.ok ? "ok" : "error", id: "data-verdict", text: r.ok ? t("data.ok") : t("data.not_ok") }),
    el("table", { id: "data-facts" }, ...facts.map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: String(v) })))),
    el("h3", { text: t("data.problems") }),
    rows.length ? el("table", { id: "data-problems" }, el("tr", {}, el("th", { text: t("data.where") }),
      el("th", { text: t("data.class") }), el("th", { text: t("data.message") })), ...rows)
      : el("p", { text: t("data.no_problems") }),
    s.histogram ? el("h3", { text: t("data.histogram") }) : null,
    s.histogram ? el("pre", { id: "data-histogram", text: s.histogram.join("\n") }) : null);
}

function checkFailed(out, error) {
  out.replaceChildren(
    el("p", { class: "error", id: "data-verdict", text: t("data.check_failed", { message: error.message }) }),
    error.hint ? el("p", { id: "data-hint", text: t("data.hint", { hint: error.hint }) }) : null);
}

// ---- train ---------------------------------------------------------------------------------------------------
async function buildForm() {
  if (!SCHEMA) SCHEMA = await api("GET", "/api/train/schema");
  const basic = $("train-basic"), adv = $("train-advanced");
  basic.replaceChildren(); adv.replaceChildren();
  for (const f of SCHEMA.fields) (f.advanced ? adv : basic).append(fieldInput(f));
}
function fieldInput(f) {
  let input;
  const id = "cfg-" + f.name;
  if (f.name === "model") {
    input = el("select", { id, name: f.name });
    for (const m of STATE.models) input.append(el("option", { value: m.value, text: m.label + (m.default ? " (" + t("train.default") + ")" : "") }));
    input.value = f.default;
  } else if (f.name === "data" || f.name === "eval_data") {
    input = el("select", { id, name: f.name });
    for (const p of (f.name === "eval_data" ? [""] : []).concat(STATE.data_files.map((d) => d.path)))
      input.append(el("option", { value: p, text: p || "—" }));
  } else if (f.choices) {
    input = el("select", { id, name: f.name });
    for (const c of (f.default === null ? [""] : []).concat(f.choices)) input.append(el("option", { value: c, text: c || "—" }));
    input.value = f.default ?? "";
  } else if (f.type === "bool") {
    input = el("input", { id, name: f.name, type: "checkbox" }); input.checked = !!f.default;
  } else {
    input = el("input", { id, name: f.name, placeholder: f.default === null ? "auto" : String(f.default) });
  }
  input.dataset.type = f.type;
  return el("label", { class: "field", for: id }, el("span", { text: f.flag }), input, el("span", { class: "help", text: T["field." + f.name] ?? f.help }));  // zh: the catalog's; en: TrainConfig's own
}
function formValues() {
  const config = {};
  for (const input of document.querySelectorAll("#train-form [data-type]")) {
    const type = input.dataset.type, name = input.name;
    if (type === "bool") { config[name] = input.checked; continue; }
    const v = input.value.trim();
    if (v === "") continue;
    config[name] = (type === "int" || type === "float") && v !== "" && !isNaN(Number(v)) ? Number(v) : v;
  }
  return config;
}
async function startRun(ev) {
  ev.preventDefault();
  const name = $("train-name").value.trim();
  try {
    await api("POST", "/api/runs", { name, config: formValues() });
  } catch (e) {
    const input = e.field && document.querySelector(`#train-form [name="${e.field}"]`);
    if (input) input.focus();
    throw e;
  }
  notice(t("train.started", { name }));
  await refresh();
  location.hash = "runs/" + encodeURIComponent(name);
}

// ---- runs ----------------------------------------------------------------------------------------------------
function statusText(s) { return t("status." + s) === "status." + s ? s : t("status." + s); }
function showRuns(name) {
  if (runStream) { runStream.close(); runStream = null; }
  const list = $("runs-list"), detail = $("run-detail");
  list.hidden = !!name; detail.hidden = !name;
  if (name) return showRun(name);
  if (!STATE.runs || !STATE.runs.length) return list.replaceChildren(el("p", { text: t("runs.none") }));
  const head = ["runs.name", "runs.status", "runs.base", "runs.method", "runs.data", "runs.steps", "runs.eval_loss", "runs.tok_s"];
  list.replaceChildren(el("table", { id: "runs-table" }, el("tr", {}, ...head.map((k) => el("th", { text: t(k) }))),
    ...STATE.runs.map((r) => el("tr", {},
      el("td", {}, el("a", { href: "#runs/" + encodeURIComponent(r.name), text: r.name })),
      el("td", { class: "status", text: statusText(r.status) }), el("td", { text: r.base_model || "" }),
      el("td", { text: r.method || "" }),
      el("td", { title: r.data_sha256 ? t("runs.data_hash") + " " + r.data_sha256 : "", text: (r.data || "").split("/").pop() }),
      el("td", { text: r.steps ?? "" }), el("td", { text: r.eval_loss != null ? r.eval_loss.toFixed(4) : "" }),
      el("td", { text: r.tokens_per_sec ?? "" })))));
}
async function showRun(name) {
  const detail = $("run-detail");
  const r = await api("GET", "/api/runs/" + encodeURIComponent(name));
  const points = r.metrics.filter((m) => m.loss !== undefined), evals = r.metrics.filter((m) => m.eval_loss !== undefined);
  const total = (r.config && r.config.max_steps) || null;
  const progress = el("div", { id: "run-progress" });
  const curve = el("div", { id: "run-curve" });
  const log = el("pre", { class: "log", id: "run-log", text: r.log || "" });
  const buttons = el("div", { class: "row" },
    el("button", { id: "run-stop", text: t("runs.stop"), disabled: !r.running, onclick: () => guarded(async () => {
      await api("POST", `/api/runs/${encodeURIComponent(name)}/stop`); }) }),
    el("button", { id: "run-resume", text: t("runs.resume"), disabled: r.running || r.status === "complete",
      onclick: () => guarded(async () => { await api("POST", `/api/runs/${encodeURIComponent(name)}/resume`); await refresh(); showRun(name); }) }),
    el("button", { id: "run-delete", text: t("runs.delete"), disabled: r.running, onclick: () => guarded(async () => {
      const typed = prompt(t("runs.delete_confirm"));
      if (typed === null) return;
      await api("DELETE", `/api/runs/${encodeURIComponent(name)}?confirm=${encodeURIComponent(typed)}`);
      notice(t("runs.deleted", { name })); await refresh(); location.hash = "runs"; }) }));
  const cfg = Object.entries(r.config || {}).map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: JSON.stringify(v) })));
  detail.replaceChildren(el("p", {}, el("a", { href: "#runs", text: "← " + t("runs.back") })),
    el("h2", { text: name }), el("p", { id: "run-status", class: "status", text: statusText(r.status) + (r.error ? " — " + r.error : "") }),
    buttons, el("h3", { text: t("runs.progress") }), progress, curve,
    el("h3", { text: t("runs.log") }), log, el("details", {}, el("summary", { text: t("runs.config") }), el("table", {}, ...cfg)));
  const live = { points, evals, total, times: [] };
  draw(live, progress, curve);
  if (r.running || r.status === "starting") follow(name, live, progress, curve);
}
function follow(name, live, progress, curve) {
  runStream = new EventSource(`/api/runs/${encodeURIComponent(name)}/events`);
  runStream.addEventListener("progress", (m) => {
    const e = JSON.parse(m.data);
    if (e.phase === "start") { live.total = e.total; live.points = live.points.filter((p) => p.step <= e.step); }
    if (e.phase === "step") {
      live.points.push(e.metrics); live.times.push([e.step, e.time]);
      $("run-status").textContent = statusText("running"); $("run-stop").disabled = false;
    }
    if (e.phase === "eval") live.evals.push(e.metrics);
    if (e.total) live.total = e.total;
    draw(live, progress, curve);
  });
  runStream.addEventListener("log", (m) => {
    const log = $("run-log"); log.textContent += JSON.parse(m.data).text; log.scrollTop = log.scrollHeight;
  });
  runStream.addEventListener("status", async () => {
    runStream.close(); runStream = null; await refresh();
    if (location.hash.startsWith("#runs/")) showRun(name);
  });
}
function draw(live, progress, curve) {
  const step = live.points.length ? live.points[live.points.length - 1].step : 0;
  const total = live.total || step || 1;
  const last = live.points[live.points.length - 1] || {};
  let eta = "";
  if (live.times.length > 1) {
    const [s0, t0] = live.times[0], [s1, t1] = live.times[live.times.length - 1];
    if (s1 > s0) eta = " · " + t("runs.eta") + " " + Math.round((t1 - t0) / (s1 - s0) * (total - step)) + " s";
  }
  progress.replaceChildren(el("div", { class: "bar" }, el("div", { style: `width:${Math.min(100, 100 * step / total)}%` })),
    el("span", { id: "run-step", text: `${step} / ${total}` + (last.loss !== undefined ? ` · ${t("runs.loss")} ${last.loss.toFixed(4)}` : "") +
      (last.tokens_per_sec ? ` · ${last.tokens_per_sec} ${t("runs.tok_s")}` : "") + eta }));
  curve.replaceChildren(svgCurve([[live.points, "loss", "#2463eb"], [live.evals, "eval_loss", "#d97706"]], total));
}
function svgCurve(series, total) {
  const W = 560, H = 200, P = 30, NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("class", "curve"); svg.setAttribute("role", "img"); svg.setAttribute("aria-label", t("runs.loss"));
  const ys = series.flatMap(([pts, key]) => pts.map((p) => p[key])).filter((v) => Number.isFinite(v));
  if (!ys.length) return svg;
  const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
  for (const [pts, key, color] of series) {
    const xy = pts.filter((p) => Number.isFinite(p[key])).map((p) =>
      `${P + (W - 2 * P) * (p.step / total)},${H - P - (H - 2 * P) * ((p[key] - lo) / span)}`);
    if (!xy.length) continue;
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", xy.join(" ")); line.setAttribute("fill", "none"); line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "2"); line.setAttribute("data-series", key); line.setAttribute("data-points", xy.length);
    svg.append(line);
  }
  for (const [y, v] of [[P, hi], [H - P, lo]]) {
    const label = document.createElementNS(NS, "text");
    label.setAttribute("x", 2); label.setAttribute("y", y); label.setAttribute("font-size", "10"); label.textContent = v.toFixed(3);
    svg.append(label);
  }
  return svg;
}
async function diff() {
  const r = await api("GET", `/api/diff?a=${encodeURIComponent($("diff-a").value)}&b=${encodeURIComponent($("diff-b").value)}`);
  $("diff-out").replaceChildren(el("table", { id: "diff-table" }, el("tr", {}, el("th", { text: t("runs.option") }),
    el("th", { text: r.a }), el("th", { text: r.b })), ...r.differ.map((d) => el("tr", {}, el("td", { text: d.option }),
    el("td", { text: JSON.stringify(d.a) }), el("td", { text: JSON.stringify(d.b) })))),
    el("p", { text: r.same.length === 1 ? t("runs.same_one") : t("runs.same", { n: r.same.length }) }));
}

// ---- jobs (eval, export) -------------------------------------------------------------------------------------
// Why a finished job did not succeed, or "" when it did. A null exit code is not success: the job ended while
// no studio watched it and its exit code was not recorded, so the page cannot say it worked.
function jobEnd(j) {
  if (j.returncode === 0) return "";
  return j.returncode === null || j.returncode === undefined ? t("job.unknown") : t("job.failed", { code: j.returncode });
}
function followJob(job, logEl, done) {
  logEl.hidden = false; logEl.textContent = "";
  const src = new EventSource(`/api/jobs/${encodeURIComponent(job.id)}/events`);
  src.addEventListener("log", (m) => { logEl.textContent += JSON.parse(m.data).text; logEl.scrollTop = logEl.scrollHeight; });
  src.addEventListener("status", (m) => {
    src.close(); const j = JSON.parse(m.data);
    const end = jobEnd(j);
    if (end) notice(end, true);
    done(j);
  });
}
async function startEval() {
  const body = { run: $("eval-run").value, data: $("eval-data").value };
  if ($("eval-max").value) body.max_examples = Number($("eval-max").value);
  const r = await api("POST", "/api/eval", body);
  $("eval-out").replaceChildren(el("p", { text: t("eval.running") }));
  followJob(r.job, $("eval-log"), (j) => jobEnd(j)  // a failed eval must not show an earlier report as its own
    ? $("eval-out").replaceChildren(el("p", { class: "error", id: "eval-done", text: jobEnd(j) })) : showEval(body.run));
}
async function showEval(name) {
  const r = await api("GET", "/api/runs/" + encodeURIComponent(name));
  const ev = r.evals[r.evals.length - 1];
  if (!ev) return $("eval-out").replaceChildren(el("p", { text: t("eval.none") }));
  const header = ev.header.length === 4 ? ["eval.metric", "eval.base", "eval.tuned", "eval.delta"].map((k) => t(k)) : ev.header;
  const rows = ev.rows.map((row) => el("tr", {}, ...row.map((c) => el("td", { text: c }))));
  $("eval-out").replaceChildren(el("p", { class: "ok", id: "eval-done", text: t("eval.done") }),
    el("table", { id: "eval-table" }, el("tr", {}, ...header.map((h) => el("th", { text: h }))), ...rows),
    el("p", {}, el("a", { href: "/files/" + ev.report, target: "_blank", text: t("eval.report") })),
    el("iframe", { src: "/files/" + ev.report, title: t("eval.report"), sandbox: "" }));
}
const QUANTS = { hf: ["", "f32", "bf16", "f16"], gguf: ["f16", "bf16", "f32", "q8_0", "q4_k_m", "q5_k_m"] };
function quants() { fill($("export-quant"), QUANTS[$("export-format").value]); }
async function startExport() {
  const body = { run: $("export-run").value, format: $("export-format").value, quant: $("export-quant").value || null,
    ollama: $("export-ollama").checked };
  const r = await api("POST", "/api/export", body);
  $("export-out").replaceChildren(el("p", { text: t("export.running") }));
  followJob(r.job, $("export-log"), async (j) => {
    const info = await api("GET", "/api/jobs/" + encodeURIComponent(j.id));
    const end = jobEnd(j);
    $("export-out").replaceChildren(el("p", { class: end ? "error" : "ok", id: "export-done", text: end || t("export.done") }),
      el("h3", { text: t("export.files") }), el("ul", { id: "export-files" }, ...(info.files || []).map((f) =>
        el("li", {}, el("a", { href: "/files/" + f, download: f.split("/").pop(), text: f })))));
  });
}

// ---- chat: the chat server's own page (thumbs, edit, regenerate; the blind arena when comparing) ----------------
async function loadChat() {
  const body = { model: $("chat-model").value };
  if ($("chat-compare").value) body.compare = $("chat-compare").value;
  $("chat-status").textContent = t("chat.loading"); $("chat-frame").hidden = true; $("chat-log").hidden = true;
  await api("POST", "/api/chat/start", body);
  for (let i = 0; i < 600; i++) {  // the model loads in its own process: ask once a second until it answers
    const s = await api("GET", "/api/chat");
    if (s.ready) {
      $("chat-status").textContent = t("chat.ready");
      // the chat server's page in the studio's language (its own catalogs, the same keys' conventions)
      $("chat-frame").src = (s.compare ? "/arena" : "/chat") + "?lang=" + lang(); $("chat-frame").hidden = false;
      return;
    }
    if (!s.running) { $("chat-log").hidden = false; $("chat-log").textContent = s.log; throw new Error(t("chat.failed")); }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// ---- wiring --------------------------------------------------------------------------------------------------
async function main() {
  T = await (await fetch(`/static/i18n-${lang()}.json`)).json();
  applyCatalog();
  $("lang").addEventListener("click", () => {
    const q = new URLSearchParams(location.search); q.set("lang", lang() === "zh" ? "en" : "zh");
    location.search = q.toString();
  });
  const tabs = [...document.querySelectorAll("#tabs button")];
  for (const b of tabs) b.addEventListener("click", () => { location.hash = b.dataset.page; });
  $("tabs").addEventListener("keydown", (e) => {  // the tab list's arrow keys (Tab, Enter and Space work too)
    const i = tabs.indexOf(document.activeElement);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (i < 0 || to === undefined) return;
    e.preventDefault();
    const next = tabs[(to + tabs.length) % tabs.length];
    next.focus(); next.click();
  });
  $("data-upload").addEventListener("change", (e) => e.target.files[0] && guarded(() => upload(e.target.files[0])));
  $("data-check").addEventListener("click", () => guarded(check));
  $("train-form").addEventListener("submit", (e) => guarded(() => startRun(e)));
  $("diff-go").addEventListener("click", () => guarded(diff));
  $("eval-start").addEventListener("click", () => guarded(startEval));
  $("export-format").addEventListener("change", quants); quants();
  $("export-start").addEventListener("click", () => guarded(startExport));
  $("chat-load").addEventListener("click", () => guarded(loadChat));
  window.addEventListener("hashchange", () => guarded(async () => { await refresh(); route(); }));
  await guarded(async () => { await refresh(); route(); });
}
main();
