// diffuse serve: node-graph editor, run queue, gallery and bench reports. Plain JS, no build step.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const SVG = "http://www.w3.org/2000/svg";

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, opts);
  const data = await res.json();
  if (!res.ok) { const err = new Error(data.error || res.statusText); err.data = data; throw err; }
  return data;
}

function showMessage(text, ok = false) {
  const m = $("#message");
  m.textContent = text; m.hidden = !text; m.className = ok ? "ok" : "";
}

function fileUrl(path) { return "/api/file?path=" + encodeURIComponent(path); }
const ext = (p) => (p.split(".").pop() || "").toLowerCase();
const IMAGE = ["png", "jpg", "jpeg", "gif", "webp"], VIDEO = ["mp4", "webm"], AUDIO = ["wav", "mp3", "ogg", "flac"];

// ---------------------------------------------------------------------------------------------- editor state
const state = { types: {}, wf: { name: "untitled", nodes: [] }, selected: null, drag: null, counter: 0, lastRun: null };

function typeColor(type) {
  let h = 0;
  for (const c of type) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h}, 65%, 48%)`;
}

function newId(type) {
  const base = type.split(".").pop();
  let id;
  do { state.counter += 1; id = `${base}_${state.counter}`; } while (state.wf.nodes.some((n) => n.id === id));
  return id;
}

function addNode(type, position) {
  const n = state.wf.nodes.length;
  const node = { id: newId(type), type, params: {}, inputs: {}, position: position || [30 + (n % 4) * 230, 30 + Math.floor(n / 4) * 190 + (n % 2) * 20] };
  state.wf.nodes.push(node);
  state.selected = node.id;
  render();
  return node;
}

function nodeById(id) { return state.wf.nodes.find((n) => n.id === id); }

function renderPalette() {
  const filter = $("#palette-filter").value.toLowerCase();
  const list = $("#palette-list");
  list.replaceChildren();
  const groups = {};
  for (const t of Object.values(state.types)) {
    if (filter && !t.name.toLowerCase().includes(filter)) continue;
    (groups[t.category] = groups[t.category] || []).push(t);
  }
  for (const cat of Object.keys(groups).sort()) {
    list.append(el("h4", {}, cat));
    for (const t of groups[cat]) list.append(el("button", { "data-type": t.name, title: t.description, onclick: () => addNode(t.name) }, t.name));
  }
}

function renderNodes() {
  const canvas = $("#canvas");
  canvas.querySelectorAll(".node").forEach((e) => e.remove());
  const run = state.lastRun;
  for (const node of state.wf.nodes) {
    const t = state.types[node.type];
    const box = el("div", { class: "node", "data-node": node.id });
    box.style.left = node.position[0] + "px"; box.style.top = node.position[1] + "px";
    if (node.id === state.selected) box.classList.add("selected");
    const title = el("div", { class: "node-title" }, t ? t.title : node.type, el("span", { class: "node-id" }, node.id));
    title.addEventListener("mousedown", (ev) => startMove(ev, node));
    box.addEventListener("mousedown", () => { if (state.selected !== node.id) { state.selected = node.id; renderNodes(); renderInspector(); } });
    const ins = el("div", { class: "col" }), outs = el("div", { class: "col" });
    for (const p of t ? t.inputs : []) {
      const dot = el("span", { class: "port in", "data-node": node.id, "data-port": p.name, title: `${p.name}: ${p.type}${p.optional ? " (optional)" : ""}` });
      dot.style.background = typeColor(p.type);
      dot.addEventListener("mouseup", (ev) => finishLink(ev, node, p));
      dot.addEventListener("click", (ev) => { ev.stopPropagation(); if (node.inputs[p.name]) { delete node.inputs[p.name]; render(); } });
      ins.append(el("div", { class: "port-row in" }, dot, el("span", { class: p.optional ? "opt" : "" }, p.name)));
    }
    for (const p of t ? t.outputs : []) {
      const dot = el("span", { class: "port out", "data-node": node.id, "data-port": p.name, title: `${p.name}: ${p.type}` });
      dot.style.background = typeColor(p.type);
      dot.addEventListener("mousedown", (ev) => startLink(ev, node, p));
      outs.append(el("div", { class: "port-row out" }, el("span", {}, p.name), dot));
    }
    box.append(title, el("div", { class: "ports" }, ins, outs));
    const info = run && run.nodes[node.id];
    if (info) {
      box.classList.add("state-" + info.state);
      const bar = el("progress", { max: info.total || 1, value: info.state === "running" ? info.n : (info.state === "waiting" ? 0 : info.total || 1), title: `${info.state} ${info.desc} ${info.n}/${info.total || "?"}` });
      box.append(bar);
    }
    canvas.append(box);
  }
  drawWires();
}

function portCenter(nodeId, port, dir) {
  const dot = $(`.port.${dir}[data-node="${CSS.escape(nodeId)}"][data-port="${CSS.escape(port)}"]`);
  if (!dot) return null;
  const c = $("#canvas").getBoundingClientRect(), r = dot.getBoundingClientRect();
  return [r.left + r.width / 2 - c.left + $("#canvas").scrollLeft, r.top + r.height / 2 - c.top + $("#canvas").scrollTop];
}

function wirePath(a, b) {
  const dx = Math.max(40, Math.abs(b[0] - a[0]) / 2);
  return `M${a[0]},${a[1]} C${a[0] + dx},${a[1]} ${b[0] - dx},${b[1]} ${b[0]},${b[1]}`;
}

function drawWires(temp) {
  const svg = $("#wires");
  svg.replaceChildren();
  for (const node of state.wf.nodes) {
    for (const [port, [src, srcPort]] of Object.entries(node.inputs)) {
      const a = portCenter(src, srcPort, "out"), b = portCenter(node.id, port, "in");
      if (!a || !b) continue;
      const t = state.types[node.type], p = t && t.inputs.find((q) => q.name === port);
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", wirePath(a, b));
      path.setAttribute("stroke", p ? typeColor(p.type) : "#888");
      path.setAttribute("data-link", `${src}.${srcPort}->${node.id}.${port}`);
      svg.append(path);
    }
  }
  if (temp) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", wirePath(temp[0], temp[1])); path.setAttribute("stroke", "#333"); path.setAttribute("stroke-dasharray", "4 3");
    svg.append(path);
  }
}

function canvasPoint(ev) {
  const c = $("#canvas"), r = c.getBoundingClientRect();
  return [ev.clientX - r.left + c.scrollLeft, ev.clientY - r.top + c.scrollTop];
}

function startMove(ev, node) {
  ev.preventDefault();
  const start = canvasPoint(ev), origin = [...node.position];
  state.drag = { kind: "move", node, start, origin };
}

function startLink(ev, node, port) {
  ev.preventDefault(); ev.stopPropagation();
  state.drag = { kind: "link", node, port, from: portCenter(node.id, port.name, "out") };
}

function finishLink(ev, node, port) {
  const d = state.drag;
  if (!d || d.kind !== "link") return;
  state.drag = null;
  if (d.port.type !== port.type) {
    showMessage(`node '${node.id}' input '${port.name}': expects ${port.type}, got ${d.port.type} from node '${d.node.id}' output '${d.port.name}'`);
    drawWires();
    return;
  }
  node.inputs[port.name] = [d.node.id, d.port.name];
  showMessage("");
  render();
}

document.addEventListener("mousemove", (ev) => {
  const d = state.drag;
  if (!d) return;
  const p = canvasPoint(ev);
  if (d.kind === "move") {
    d.node.position = [Math.max(0, d.origin[0] + p[0] - d.start[0]), Math.max(0, d.origin[1] + p[1] - d.start[1])];
    const box = $(`.node[data-node="${CSS.escape(d.node.id)}"]`);
    box.style.left = d.node.position[0] + "px"; box.style.top = d.node.position[1] + "px";
    drawWires();
  } else if (d.kind === "link") drawWires([d.from, p]);
});
document.addEventListener("mouseup", () => { if (state.drag) { state.drag = null; drawWires(); } });

function paramInput(node, p) {
  const value = p.name in node.params ? node.params[p.name] : p.default;
  const set = (v) => {
    if (JSON.stringify(v) === JSON.stringify(p.default)) delete node.params[p.name]; else node.params[p.name] = v;
  };
  const attrs = { name: p.name, "data-param": p.name };
  let input;
  if (p.kind === "bool") {
    input = el("input", { ...attrs, type: "checkbox" }); input.checked = !!value;
    input.addEventListener("change", () => set(input.checked));
  } else if (p.kind === "choice") {
    input = el("select", attrs, p.choices.map((c) => el("option", { value: JSON.stringify(c) }, c === "" ? "(default)" : String(c))));
    input.value = JSON.stringify(value);
    input.addEventListener("change", () => set(JSON.parse(input.value)));
  } else if (p.kind === "text" || p.kind === "list") {
    input = el("textarea", attrs);
    input.value = p.kind === "list" ? (value || []).join("\n") : (value || "");
    input.addEventListener("input", () => {
      if (p.kind === "text") return set(input.value);
      const items = input.value.split("\n").map((s) => s.trim()).filter((s) => s);
      const numeric = (s) => (p.item === "str" ? false : p.item ? true : /^-?\d+(\.\d+)?(e-?\d+)?$/i.test(s));
      set(items.map((s) => (numeric(s) && !Number.isNaN(Number(s)) ? Number(s) : s)));
    });
  } else {
    const number = p.kind === "int" || p.kind === "float";
    input = el("input", { ...attrs, type: number ? "number" : "text", step: p.kind === "int" ? "1" : "any" });
    input.value = value === null || value === undefined ? "" : value;
    input.addEventListener("input", () => {
      if (!number) return set(input.value);
      if (input.value === "") return set(null);
      set(p.kind === "int" ? parseInt(input.value, 10) : parseFloat(input.value));
    });
  }
  return el("label", {}, p.name + (p.required ? " *" : ""), " ", el("span", { class: "help" }, p.help), input);
}

function renderInspector() {
  const box = $("#inspector");
  const node = state.selected && nodeById(state.selected);
  if (!node) { box.replaceChildren(el("p", { class: "hint" }, "Select a node to edit its parameters. Drag from an output (right) to an input (left) to connect; click a connected input to disconnect.")); return; }
  const t = state.types[node.type];
  box.replaceChildren(el("h3", {}, node.id), el("div", { class: "desc" }, node.type + (t ? ": " + t.description : " (unknown type)")));
  for (const p of t ? t.params : []) box.append(paramInput(node, p));
  const info = state.lastRun && state.lastRun.nodes[node.id];
  if (info && info.files.length) box.append(previews(info.files));
}

function previews(files) {
  const div = el("div", { class: "previews" });
  for (const f of files.filter((f) => IMAGE.includes(ext(f))).slice(0, 12)) div.append(el("img", { src: fileUrl(f), title: f }));
  return div;
}

function render() { renderNodes(); renderInspector(); }

function markError(data) {
  document.querySelectorAll(".node.error, .port.error").forEach((e) => e.classList.remove("error"));
  if (!data || !data.node) return;
  const box = $(`.node[data-node="${CSS.escape(data.node)}"]`);
  if (box) box.classList.add("error");
  if (data.port) {
    const dot = box && box.querySelector(`.port[data-port="${CSS.escape(data.port)}"]`);
    if (dot) dot.classList.add("error");
  }
}

function workflowJson() {
  return { format: "diffcore-workflow", version: 1, name: $("#wf-name").value, nodes: state.wf.nodes };
}

async function refreshList() {
  const names = await api("/api/workflows");
  $("#wf-list").replaceChildren(...names.map((n) => el("option", { value: n }, n)));
}

async function onSave() {
  const name = $("#wf-name").value.trim();
  try { await api("/api/workflows/" + encodeURIComponent(name), workflowJson()); showMessage(`saved workflow '${name}' (workflows/${name}.json)`, true); await refreshList(); }
  catch (e) { showMessage(e.message); }
}

async function onLoad() {
  const name = $("#wf-list").value;
  if (!name) return;
  try {
    const data = await api("/api/workflows/" + encodeURIComponent(name));
    state.wf = { name: data.name, nodes: data.nodes.map((n, i) => ({ ...n, params: n.params || {}, inputs: n.inputs || {}, position: n.position || [30 + i * 220, 40] })) };
    $("#wf-name").value = data.name || name;
    state.selected = null; state.lastRun = null;
    render(); showMessage(`loaded workflow '${name}'`, true);
  } catch (e) { showMessage(e.message); }
}

async function onValidate() {
  const r = await api("/api/validate", workflowJson());
  markError(r.ok ? null : r);
  showMessage(r.ok ? "the workflow is valid" : r.error, r.ok);
  return r.ok;
}

async function onRun() {
  try {
    const run = await api("/api/queue", workflowJson());
    state.lastRun = run; state.watch = run.id;
    markError(null); showMessage(`queued ${run.id}`, true);
    render(); poll();
  } catch (e) { markError(e.data); showMessage(e.message); }
}

// ---------------------------------------------------------------------------------------------- queue
async function poll() {
  const runs = await api("/api/queue");
  const active = runs.some((r) => r.status === "queued" || r.status === "running");
  const watched = runs.find((r) => r.id === state.watch);
  if (watched) {
    state.lastRun = watched;
    const running = Object.entries(watched.nodes).find(([, n]) => n.state === "running");
    $("#status-line").textContent = `${watched.id}: ${watched.status}` + (running ? ` (${running[0]} ${running[1].n}/${running[1].total || "?"})` : "");
    if (location.hash.startsWith("#editor") || location.hash === "") { renderNodes(); if (watched.status !== "running") renderInspector(); }
    if (watched.status === "failed") { showMessage(watched.error); markError({ node: watched.error_node }); }
    if (watched.status === "done") showMessage(`${watched.id} done in ${watched.seconds.toFixed(1)}s; ${watched.files.length} files saved`, true);
  }
  if (location.hash.startsWith("#queue")) renderQueue(runs);
  clearTimeout(state.pollTimer);
  if (active || location.hash.startsWith("#queue")) state.pollTimer = setTimeout(poll, 500);
}

function renderQueue(runs) {
  const list = $("#queue-list");
  if (!runs.length) { list.replaceChildren(el("p", { class: "hint" }, "No runs yet: build a workflow in the editor and press Run.")); return; }
  list.replaceChildren(...runs.map((r) => el("div", { class: "run", "data-run": r.id },
    el("h3", {}, `${r.id} · ${r.name} `, el("span", { class: "badge " + r.status }, r.status), r.seconds ? ` ${r.seconds.toFixed(1)}s` : "", ` · queued ${r.created}`),
    r.error ? el("div", { class: "error" }, r.error) : "",
    el("table", {}, Object.entries(r.nodes).map(([id, n]) => el("tr", { "data-node": id },
      el("td", {}, id), el("td", {}, n.type), el("td", {}, n.state),
      el("td", { class: "progress" }, el("progress", { max: n.total || 1, value: n.state === "waiting" ? 0 : (n.state === "running" ? n.n : n.total || 1) }), n.desc ? ` ${n.desc} ${n.n}/${n.total || "?"}` : ""),
      el("td", { class: "previews" }, n.preview ? el("img", { class: "live", src: n.preview, title: `x0 estimate, step ${n.preview_step}/${n.preview_total || "?"}` }) : "", n.preview ? el("span", { class: "hint live-step" }, ` step ${n.preview_step}/${n.preview_total || "?"}`) : "", ...n.files.filter((f) => IMAGE.includes(ext(f))).slice(0, 6).map((f) => el("img", { src: fileUrl(f), title: f })))))))));
}

// ---------------------------------------------------------------------------------------------- gallery
function structurePreview(path, kind) {
  const canvas = el("canvas", { width: 240, height: 180 });
  fetch(fileUrl(path)).then((r) => r.text()).then((text) => {
    const pts = [];
    if (kind === "pdb") {
      for (const line of text.split("\n")) if (line.startsWith("ATOM") && line.substr(12, 4).trim() === "CA") pts.push([+line.substr(30, 8), +line.substr(38, 8), +line.substr(46, 8)]);
    } else {
      const lines = text.split("\n"); const n = +(lines.find((l) => l.startsWith("element vertex")) || "0 0 0").split(" ")[2];
      const start = lines.indexOf("end_header") + 1;
      for (let i = start; i < start + Math.min(n, 20000); i++) { const v = lines[i].trim().split(/\s+/).map(Number); if (v.length >= 3) pts.push(v.slice(0, 3)); }
    }
    if (!pts.length) return;
    const ctx = canvas.getContext("2d");
    // project onto the two axes of widest spread (a helix seen from the side, not down its axis)
    const spread = [0, 1, 2].map((k) => Math.max(...pts.map((p) => p[k])) - Math.min(...pts.map((p) => p[k])));
    const [a, b] = [0, 1, 2].sort((i, j) => spread[j] - spread[i]).slice(0, 2);
    const lo = [a, b].map((k) => Math.min(...pts.map((p) => p[k]))), hi = [a, b].map((k) => Math.max(...pts.map((p) => p[k])));
    const s = Math.min(220 / (hi[0] - lo[0] || 1), 160 / (hi[1] - lo[1] || 1));
    const ox = 10 + (220 - (hi[0] - lo[0]) * s) / 2, oy = 170 - (160 - (hi[1] - lo[1]) * s) / 2;  // centred
    const xy = (p) => [ox + (p[a] - lo[0]) * s, oy - (p[b] - lo[1]) * s];
    ctx.strokeStyle = "#6ea8fe"; ctx.fillStyle = "#f0a500";
    if (kind === "pdb") { ctx.beginPath(); pts.forEach((p, i) => (i ? ctx.lineTo(...xy(p)) : ctx.moveTo(...xy(p)))); ctx.stroke(); }
    else pts.forEach((p) => ctx.fillRect(...xy(p), 1.5, 1.5));
  });
  return canvas;
}

function mediaFor(path) {
  const e = ext(path);
  if (IMAGE.includes(e)) return el("img", { src: fileUrl(path), alt: path });
  if (VIDEO.includes(e)) return el("video", { src: fileUrl(path), controls: "", loop: "" });
  if (AUDIO.includes(e)) return el("audio", { src: fileUrl(path), controls: "" });
  if (e === "pdb" || e === "ply") return structurePreview(path, e);
  return el("a", { href: fileUrl(path) }, "open");
}

async function renderGallery() {
  const items = await api("/api/gallery");
  const grid = $("#gallery-grid");
  if (!items.length) { grid.replaceChildren(el("p", { class: "hint" }, "Nothing saved yet: a workflow's save nodes put their files here.")); return; }
  grid.replaceChildren(...items.map((it) => el("div", { class: "card", "data-file": it.path },
    mediaFor(it.path), el("div", {}, `${it.workflow} · ${it.run}`), el("div", { class: "path" }, it.path))));
}

// ---------------------------------------------------------------------------------------------- bench
// Horizontal bars; with perRow each row has its own scale (metrics of different units), its target a black line.
function barChart(title, rows, unit, perRow = false) {
  const w = 460, rowH = 22, h = 34 + rows.length * rowH, left = 150;
  const common = Math.max(...rows.map((r) => Math.max(r.value, r.target ?? 0)), 1e-12);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "plot"); svg.setAttribute("width", w); svg.setAttribute("height", h);
  const add = (tag, attrs, text) => { const e = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; svg.append(e); return e; };
  add("text", { x: 8, y: 18, "font-size": 13, "font-weight": 600 }, title);
  rows.forEach((r, i) => {
    const max = perRow ? Math.max(r.value, r.target ?? 0, 1e-12) * 1.15 : common;
    const y = 28 + i * rowH, len = Math.max(1, (r.value / max) * (w - left - 70));
    add("text", { x: 8, y: y + 14, "font-size": 11 }, r.label.slice(0, 22));
    add("rect", { x: left, y: y + 3, width: len, height: 14, fill: r.met === false ? "#e57373" : r.met ? "#66bb6a" : "#6ea8fe" });
    add("text", { x: left + len + 4, y: y + 14, "font-size": 11 }, `${+r.value.toPrecision(4)}${unit || ""}`);
    if (r.target !== undefined && r.target !== null) {
      const x = left + (r.target / max) * (w - left - 70);
      add("line", { x1: x, x2: x, y1: y, y2: y + 20, stroke: "#1d2330", "stroke-width": 2 });
    }
  });
  return svg;
}

async function renderBench(id) {
  const body = $("#bench-body");
  if (!id) {
    const list = await api("/api/bench");
    if (!list.length) { body.replaceChildren(el("p", { class: "hint" }, "No report.json found under the bench folder (diffuse bench writes runs/bench-<timestamp>/).")); return; }
    body.replaceChildren(el("table", { class: "report" }, el("tr", {}, ["report", "started", "mode", "device", "modalities"].map((h) => el("th", {}, h))),
      list.map((r) => el("tr", {}, el("td", {}, el("a", { href: "#bench/" + r.id }, r.id)), el("td", {}, r.started || ""), el("td", {}, r.quick ? "quick" : "full"), el("td", {}, r.device || "?"), el("td", {}, r.modalities.join(", "))))));
    return;
  }
  const rep = await api("/api/bench/" + id);
  const env = rep.environment || {};
  const parts = [el("h3", {}, id), el("p", {}, `${rep.quick ? "quick" : "full"} run on ${env.device || "?"}, torch ${env.torch || "?"}, diffcore ${env.diffcore || "?"}; started ${rep.started}${rep.finished ? "" : " (unfinished)"}`)];
  parts.push(el("table", { class: "report" }, el("tr", {}, ["modality", "status", "seconds", "summary"].map((h) => el("th", {}, h))),
    rep.modalities.map((m) => el("tr", {}, el("td", {}, m.modality), el("td", {}, m.status), el("td", {}, (m.seconds || 0).toFixed(1)), el("td", {}, m.summary || m.error || "")))));
  parts.push(barChart("seconds per modality", rep.modalities.map((m) => ({ label: m.modality, value: m.seconds || 0 })), " s"));
  for (const m of rep.modalities) {
    const names = Object.keys(m.metrics || {});
    if (!names.length) continue;
    const rows = names.filter((k) => Number.isFinite(m.metrics[k])).map((k) => ({ label: k, value: m.metrics[k], target: m.targets && m.targets[k] ? m.targets[k].value : undefined, met: m.verdicts && m.verdicts[k] ? m.verdicts[k] === "met" : undefined }));
    parts.push(barChart(`${m.modality}: metrics (line = target, each row its own scale)`, rows, "", true));
    parts.push(el("table", { class: "report" }, el("tr", {}, ["metric", "value", "target", "verdict"].map((h) => el("th", {}, h))),
      names.map((k) => el("tr", {}, el("td", {}, k), el("td", {}, String(m.metrics[k])), el("td", {}, m.targets && m.targets[k] ? `${m.targets[k].direction} ${m.targets[k].value}` : ""),
        el("td", { class: m.verdicts && m.verdicts[k] === "met" ? "met" : "notmet" }, (m.verdicts && m.verdicts[k]) || "")))));
    const media = (m.files || []).filter((f) => IMAGE.includes(ext(f)) || AUDIO.includes(ext(f)) || VIDEO.includes(ext(f))).slice(0, 4);
    if (media.length) parts.push(el("div", { class: "grid" }, media.map((f) => el("div", { class: "card" }, mediaFor(`${rep.folder}/${f}`), el("div", { class: "path" }, f)))));
  }
  body.replaceChildren(...parts);
}

// ---------------------------------------------------------------------------------------------- routing
function route() {
  showMessage("");
  const hash = location.hash.slice(1) || "editor";
  const [page, ...rest] = hash.split("/");
  for (const p of ["editor", "queue", "gallery", "bench"]) {
    $("#page-" + p).hidden = p !== page;
    $("#nav-" + p).classList.toggle("active", p === page);
  }
  if (page === "queue") poll();
  if (page === "gallery") renderGallery();
  if (page === "bench") renderBench(rest.join("/"));
  if (page === "editor") render();
}

async function main() {
  const types = await api("/api/nodes");
  for (const t of types) state.types[t.name] = t;
  renderPalette();
  $("#palette-filter").addEventListener("input", renderPalette);
  $("#btn-new").addEventListener("click", () => { state.wf = { name: "untitled", nodes: [] }; state.selected = null; state.lastRun = null; $("#wf-name").value = "untitled"; render(); showMessage(""); });
  $("#btn-save").addEventListener("click", onSave);
  $("#btn-load").addEventListener("click", onLoad);
  $("#btn-validate").addEventListener("click", onValidate);
  $("#btn-run").addEventListener("click", onRun);
  $("#btn-delete").addEventListener("click", () => {
    if (!state.selected) return;
    state.wf.nodes = state.wf.nodes.filter((n) => n.id !== state.selected);
    for (const n of state.wf.nodes) for (const [p, [src]] of Object.entries(n.inputs)) if (src === state.selected) delete n.inputs[p];
    state.selected = null; render();
  });
  $("#canvas").addEventListener("scroll", () => drawWires());
  window.addEventListener("hashchange", route);
  await refreshList();
  route();
}

main();
