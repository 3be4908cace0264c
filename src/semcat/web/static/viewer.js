// The image page's viewer: the image fitted to the panel, zoom (wheel, buttons, + - 0 1 keys) and
// pan (drag, arrow keys) down to 1 screen px = 1 image px and 2x beyond, fetching only the visible
// tiles of the level the zoom needs from /tiles/<sha>/ (semcat.web.tiles). A scale bar of a round
// length follows the zoom. Without JavaScript (or when tiles fail) the plain preview stays.
"use strict";

function setupViewer() {
  const box = document.querySelector(".viewer[data-sha]");
  if (!box) return;
  const sha = box.dataset.sha;
  const pixelSize = parseFloat(box.dataset.pixelSize || "");
  const figure = box.closest("figure");
  const bar = figure.querySelector(".scalebar");
  const readout = figure.querySelector(".zoom-level");
  const layer = document.createElement("div");
  layer.className = "viewer-layer";
  const shown = new Map(); // "level/x/y" -> [<img>, its place in image pixels]
  const STEP = 1.5;
  let info = null, steps = [], maxBarPx = 0, scale = 1, fit = 1, ox = 0, oy = 0; // screen = image * scale + (ox, oy)

  const size = () => [box.clientWidth, box.clientHeight];
  const maxScale = () => Math.max(2, fit);
  const clampScale = (s) => Math.min(maxScale(), Math.max(fit, s));

  function clampPan() {
    const [cw, ch] = size();
    const w = info.width * scale, h = info.height * scale;
    ox = w <= cw ? (cw - w) / 2 : Math.min(0, Math.max(cw - w, ox));
    oy = h <= ch ? (ch - h) / 2 : Math.min(0, Math.max(ch - h, oy));
  }

  function levelFor(s) { // the coarsest level with at least one level pixel per device pixel
    const top = info.levels - 1;
    const down = Math.floor(Math.log2(1 / (s * (window.devicePixelRatio || 1))));
    return Math.max(0, top - Math.max(0, down));
  }

  function tilesOf(level, visibleOnly) {
    const k = 2 ** (info.levels - 1 - level);
    const lw = Math.ceil(info.width / k), lh = Math.ceil(info.height / k);
    const sx = info.width / lw, sy = info.height / lh, t = info.tile;
    let x0 = 0, y0 = 0, x1 = Math.ceil(lw / t) - 1, y1 = Math.ceil(lh / t) - 1;
    if (visibleOnly) {
      const [cw, ch] = size();
      x0 = Math.max(x0, Math.floor(-ox / scale / (t * sx)));
      y0 = Math.max(y0, Math.floor(-oy / scale / (t * sy)));
      x1 = Math.min(x1, Math.floor((cw - ox) / scale / (t * sx)));
      y1 = Math.min(y1, Math.floor((ch - oy) / scale / (t * sy)));
    }
    const out = [];
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const w = Math.min(t, lw - x * t), h = Math.min(t, lh - y * t);
        out.push({ key: `${level}/${x}/${y}`, url: `/tiles/${sha}/${level}/${x}_${y}.png`, level,
                   left: x * t * sx, top: y * t * sy, width: w * sx, height: h * sy });
      }
    }
    return out;
  }

  function place(img, t) { // edges on whole screen pixels, shared by neighbours: no seams between tiles
    const x0 = Math.round(ox + t.left * scale), x1 = Math.round(ox + (t.left + t.width) * scale);
    const y0 = Math.round(oy + t.top * scale), y1 = Math.round(oy + (t.top + t.height) * scale);
    Object.assign(img.style, { left: `${x0}px`, top: `${y0}px`, width: `${x1 - x0}px`, height: `${y1 - y0}px` });
  }

  function draw() {
    clampPan();
    box.classList.toggle("pixels", scale >= 1);
    const base = levelFor(fit), level = levelFor(scale);
    const want = tilesOf(base, false).concat(level > base ? tilesOf(level, true) : []);
    const keys = new Set(want.map((t) => t.key));
    for (const [key, [img]] of shown) if (!keys.has(key)) { img.remove(); shown.delete(key); }
    for (const t of want) {
      if (shown.has(t.key)) continue;
      const img = document.createElement("img");
      img.alt = "";
      img.draggable = false;
      img.className = `tile level-${t.level}`;
      img.style.zIndex = String(t.level);
      img.src = t.url;
      layer.appendChild(img);
      shown.set(t.key, [img, t]);
    }
    for (const [img, t] of shown.values()) place(img, t);
    if (readout) readout.textContent = `${Math.round(scale * 100)} %`;
    drawScaleBar();
  }

  function drawScaleBar() { // the rule of semcat.scalebar.scale_bar, on the steps it sent
    if (!bar || !(pixelSize > 0)) return;
    const perPx = pixelSize / scale, longest = perPx * maxBarPx * (1 + 1e-9);
    const fits = steps.filter(([m]) => m <= longest);
    bar.hidden = !fits.length;
    if (!fits.length) return;
    const [metres, label] = fits[fits.length - 1];
    bar.querySelector(".scalebar-line").style.width = `${metres / perPx}px`;
    bar.querySelector(".scalebar-label").textContent = label;
  }

  function zoomAt(px, py, s) {
    s = clampScale(s);
    ox = px - (px - ox) * (s / scale);
    oy = py - (py - oy) * (s / scale);
    scale = s;
    draw();
  }
  const zoomCentre = (s) => { const [cw, ch] = size(); zoomAt(cw / 2, ch / 2, s); };

  function reset() {
    const tall = box.clientWidth * info.height / info.width; // no more panel than the image needs
    box.style.height = `${Math.round(Math.max(240, Math.min(window.innerHeight * 0.75, tall)))}px`;
    const [cw, ch] = size();
    fit = Math.min(cw / info.width, ch / info.height);
    scale = fit;
    ox = oy = 0;
    draw();
  }

  const actions = {
    in: () => zoomCentre(scale * STEP), out: () => zoomCentre(scale / STEP),
    fit: reset, one: () => zoomCentre(1),
  };
  const keys = { "+": "in", "=": "in", "-": "out", "0": "fit", "1": "one" };
  const pans = { ArrowLeft: [1, 0], ArrowRight: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };

  function start(data) {
    info = data;
    ({ steps, max_px: maxBarPx } = data.scale_bar);
    box.replaceChildren(layer);
    box.classList.add("live");
    figure.querySelectorAll(".viewer-controls").forEach((el) => { el.hidden = false; });
    figure.querySelectorAll("[data-zoom]").forEach((b) => b.addEventListener("click", () => actions[b.dataset.zoom]()));
    box.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = box.getBoundingClientRect();
      const px = ev.deltaY * ([1, 16, 400][ev.deltaMode] || 1); // lines or pages (Firefox) as pixels
      zoomAt(ev.clientX - r.left, ev.clientY - r.top, scale * Math.exp(-px * 0.002));
    }, { passive: false });
    box.addEventListener("keydown", (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (keys[ev.key]) actions[keys[ev.key]]();
      else if (pans[ev.key]) {
        const [cw, ch] = size();
        ox += pans[ev.key][0] * cw / 5;
        oy += pans[ev.key][1] * ch / 5;
        draw();
      } else return;
      ev.preventDefault();
    });
    let drag = null;
    box.addEventListener("pointerdown", (ev) => {
      drag = [ev.clientX, ev.clientY];
      box.setPointerCapture(ev.pointerId);
      box.classList.add("dragging");
    });
    box.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      ox += ev.clientX - drag[0];
      oy += ev.clientY - drag[1];
      drag = [ev.clientX, ev.clientY];
      draw();
    });
    const stop = () => { drag = null; box.classList.remove("dragging"); };
    box.addEventListener("pointerup", stop);
    box.addEventListener("pointercancel", stop);
    box.addEventListener("dblclick", reset);
    window.addEventListener("resize", () => {
      const fitted = scale === fit;
      const [cw, ch] = size();
      fit = Math.min(cw / info.width, ch / info.height);
      if (fitted) reset(); else { scale = clampScale(scale); draw(); }
    });
    reset();
  }

  fetch(`/tiles/${sha}/info.json`, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`tiles: ${r.status}`))))
    .then(start)
    .catch(() => { box.classList.add("static"); }); // the preview image stays
}

document.addEventListener("DOMContentLoaded", setupViewer);
