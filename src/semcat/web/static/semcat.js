// semcat: keyboard review and drag-and-drop upload. Plain JS, no inline handlers (CSP: script-src 'self').
"use strict";

function typingInField(ev) {
  const t = ev.target;
  return t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
}

// Review page: each class's key (1..9, 0, letters) confirms it; Backspace (or ← right after a
// label) undoes the last label; n focuses the new-category field; ← / → previous / next image.
function setupReview() {
  const review = document.getElementById("review");
  const undo = document.getElementById("undo");
  if (!review && !undo) return;
  let busy = false;
  document.addEventListener("keydown", (ev) => {
    if (busy || ev.ctrlKey || ev.metaKey || ev.altKey || typingInField(ev)) return;
    if (undo && (ev.key === "Backspace" || ev.key === "ArrowLeft")) {
      busy = true;
      ev.preventDefault();
      undo.requestSubmit();
    } else if (!review) {
      return;
    } else if (ev.key === "n" && document.getElementById("new-category")) {
      ev.preventDefault();
      document.querySelector('#new-category input[name="name"]').focus();
    } else if (/^[0-9a-z]$/.test(ev.key)) {
      const button = review.querySelector(`button[data-key="${ev.key}"]:not([disabled])`);
      if (button) {
        busy = true;  // one label per keypress, even when the key repeats
        ev.preventDefault();
        button.classList.add("pressed");
        button.form.requestSubmit(button);
      }
    } else if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
      const link = document.getElementById(ev.key === "ArrowRight" ? "next" : "prev");
      if (link) { ev.preventDefault(); busy = true; window.location.assign(link.href); }
    }
  });
}

// Map page: points on a canvas from /api/map; hover → thumbnail, lasso → selection, one POST labels it.
// Hover and selection times (ms) are kept in window.semcatMapTimings for benchmarks/map.py.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#ad494a", "#8ca252", "#bd9e39"];
function setupMap() {
  const canvas = document.getElementById("map");
  if (!canvas) return;
  const ctx = canvas.getContext("2d");
  const base = document.createElement("canvas");  // the points, drawn once per colouring/selection
  base.width = canvas.width; base.height = canvas.height;
  const bctx = base.getContext("2d");
  const sel = document.createElement("canvas");  // the selected points, redrawn per lasso
  sel.width = canvas.width; sel.height = canvas.height;
  const sctx = sel.getContext("2d");
  const tip = document.getElementById("map-tip");
  const status = document.getElementById("map-status");
  const colorBy = document.getElementById("map-color");
  const form = document.getElementById("map-label");
  const timings = { hover: [], select: [] };
  window.semcatMapTimings = timings;
  const W = canvas.width, H = canvas.height, PAD = 8, CELL = 8, COLS = Math.ceil(W / CELL);
  let data = null, px = null, py = null, cells = null, selected = [], lasso = null;

  function project() {
    const n = data.n;
    px = new Float32Array(n); py = new Float32Array(n); cells = new Map();
    for (let i = 0; i < n; i++) {
      px[i] = PAD + data.x[i] * (W - 2 * PAD);
      py[i] = PAD + (1 - data.y[i]) * (H - 2 * PAD);
      const key = Math.floor(py[i] / CELL) * COLS + Math.floor(px[i] / CELL);
      let list = cells.get(key);
      if (!list) { list = []; cells.set(key, list); }
      list.push(i);
    }
  }
  function rgba(hex) {  // "#rrggbb" → a little-endian RGBA pixel for a Uint32Array view
    const v = parseInt(hex.slice(1), 16);
    return (0xff000000 | ((v & 0xff) << 16) | (v & 0xff00) | ((v >> 16) & 0xff)) >>> 0;
  }
  function paint(target, indices, colorOf) {  // 3x3 squares straight into pixels: no per-point draw call
    const img = target.createImageData(W, H), buf = new Uint32Array(img.data.buffer);
    for (const i of indices) {
      const x = px[i] | 0, y = py[i] | 0, c = colorOf(i);
      for (let dy = -1; dy <= 1; dy++) {
        const row = (y + dy) * W;
        if (y + dy < 0 || y + dy >= H) continue;
        for (let dx = -1; dx <= 1; dx++) if (x + dx >= 0 && x + dx < W) buf[row + x + dx] = c;
      }
    }
    target.putImageData(img, 0, 0);
  }
  function drawBase() {
    const field = colorBy.value, codes = data[field], names = data.names[field];
    const colors = names.map((name, c) => rgba(name === null ? "#cccccc" : PALETTE[c % PALETTE.length]));
    paint(bctx, Array.from({ length: data.n }, (_, i) => i), (i) => colors[codes[i]]);
    const legend = document.getElementById("map-legend");
    legend.replaceChildren(...names.map((name, c) => {
      const span = document.createElement("span"), dot = document.createElement("i");
      dot.style.background = name === null ? "#cccccc" : PALETTE[c % PALETTE.length];
      span.append(dot, document.createTextNode(name === null ? "(none)" : name));
      return span;
    }));
    drawSelection();
  }
  function drawSelection() {
    const black = rgba("#000000");
    paint(sctx, selected, () => black);
    show();
  }
  function show() {
    ctx.clearRect(0, 0, W, H);
    ctx.drawImage(base, 0, 0);
    if (selected.length) ctx.drawImage(sel, 0, 0);
    if (lasso && lasso.length > 1) {
      ctx.beginPath(); ctx.moveTo(lasso[0][0], lasso[0][1]);
      for (const [x, y] of lasso) ctx.lineTo(x, y);
      ctx.strokeStyle = "#d62728"; ctx.stroke();
    }
  }
  function nearest(x, y) {
    let best = -1, bestD = 36;  // within 6 px
    const cx = Math.floor(x / CELL), cy = Math.floor(y / CELL);
    for (let r = cy - 1; r <= cy + 1; r++) for (let c = cx - 1; c <= cx + 1; c++) {
      for (const i of cells.get(r * COLS + c) || []) {
        const d = (px[i] - x) ** 2 + (py[i] - y) ** 2;
        if (d < bestD) { bestD = d; best = i; }
      }
    }
    return best;
  }
  function inside(poly, x, y) {
    let hit = false;
    for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
      const [xa, ya] = poly[a], [xb, yb] = poly[b];
      if ((ya > y) !== (yb > y) && x < ((xb - xa) * (y - ya)) / (yb - ya) + xa) hit = !hit;
    }
    return hit;
  }
  function select(poly) {
    const xs = poly.map((p) => p[0]), ys = poly.map((p) => p[1]);
    const c0 = Math.floor(Math.min(...xs) / CELL), c1 = Math.floor(Math.max(...xs) / CELL);
    const r0 = Math.floor(Math.min(...ys) / CELL), r1 = Math.floor(Math.max(...ys) / CELL);
    const out = [];
    for (let r = r0; r <= r1; r++) for (let c = c0; c <= c1; c++) {
      for (const i of cells.get(r * COLS + c) || []) if (inside(poly, px[i], py[i])) out.push(i);
    }
    return out;
  }
  function pos(ev) {
    const rect = canvas.getBoundingClientRect();
    return [(ev.clientX - rect.left) * (W / rect.width), (ev.clientY - rect.top) * (H / rect.height)];
  }
  canvas.addEventListener("mousedown", (ev) => { lasso = [pos(ev)]; tip.hidden = true; });
  canvas.addEventListener("mousemove", (ev) => {
    const [x, y] = pos(ev);
    if (lasso) { lasso.push([x, y]); show(); return; }
    if (!data) return;
    const t0 = performance.now();
    const i = nearest(x, y);
    if (i < 0) { tip.hidden = true; } else {
      tip.hidden = false;
      tip.style.left = `${px[i] + 12}px`; tip.style.top = `${py[i] + 12}px`;
      tip.querySelector("img").src = `/thumbs/${data.sha256[i]}.png?size=128`;
      const name = data.names.category[data.category[i]];
      tip.querySelector("span").textContent = name === null ? "(none)" : name;
    }
    timings.hover.push(performance.now() - t0);
  });
  window.addEventListener("mouseup", () => {
    if (!lasso) return;
    const poly = lasso; lasso = null;
    if (poly.length < 3 || !data) { show(); return; }
    const t0 = performance.now();
    selected = select(poly);
    drawSelection();
    timings.select.push(performance.now() - t0);
    status.textContent = `${selected.length} selected of ${data.n}`;
    if (form) {
      form.hidden = selected.length === 0;
      document.getElementById("map-count").textContent = `${selected.length} images:`;
    }
  });
  colorBy.addEventListener("change", drawBase);
  if (form) form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const label = form.querySelector("select").value;
    const r = await fetch("/api/labels", {
      method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
      body: JSON.stringify({ sha256: selected.map((i) => data.sha256[i]), label }),
    });
    const body = await r.json();
    status.textContent = r.ok ? `labelled ${body.labelled} images ${label}` : `not labelled: ${body.detail}`;
    if (r.ok) { selected = []; form.hidden = true; await load(false); }
  });
  async function load(first = true) {
    const r = await fetch("/api/map");
    data = await r.json();
    project(); drawBase();
    if (first) status.textContent = `${data.n} images`;
    canvas.dataset.ready = String(Number(canvas.dataset.ready || 0) + 1);
    window.semcatMap = { n: data.n, sha256: data.sha256, px, py };
  }
  load();
}

// Upload page: dropping files anywhere on the form fills the file input and submits it.
function setupUpload() {
  const form = document.getElementById("upload");
  if (!form) return;
  const input = form.querySelector('input[type="file"]');
  ["dragenter", "dragover"].forEach((name) => form.addEventListener(name, (ev) => {
    ev.preventDefault(); form.classList.add("over");
  }));
  form.addEventListener("dragleave", () => form.classList.remove("over"));
  form.addEventListener("drop", (ev) => {
    ev.preventDefault(); form.classList.remove("over");
    if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
    input.files = ev.dataTransfer.files;
    form.requestSubmit();
  });
  input.addEventListener("change", () => { if (input.files.length) form.requestSubmit(); });
}

// Long ids (sha256, model id) are shown cut short: a click copies the full id (kept in data-copy).
function setupCopyIds() {
  document.querySelectorAll("[data-copy]").forEach((el) => el.addEventListener("click", () => {
    if (!navigator.clipboard) return;
    navigator.clipboard.writeText(el.dataset.copy).then(() => {
      el.classList.add("copied");
      setTimeout(() => el.classList.remove("copied"), 1200);
    });
  }));
}

document.addEventListener("DOMContentLoaded", () => { setupReview(); setupUpload(); setupMap(); setupCopyIds(); });
