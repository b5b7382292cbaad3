// The mlpsim run explorer: everything drawn here is computed from the embedded weights.
// State: {instance, checkpoint (index into the embedded checkpoints), colour, histogram layer},
// mirrored in the URL fragment (#instance=0&checkpoint=last, checkpoint as the run's own index).
"use strict";
(function () {
  const errorBox = document.getElementById("errors");
  function reportError(message) {
    errorBox.hidden = false;
    errorBox.textContent += message + "\n";
  }
  window.addEventListener("error", (ev) => reportError("error: " + ev.message));

  // ------------------------------------------------------------ data
  const D = JSON.parse(document.getElementById("mlpsim-data").textContent);
  function bytes(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function half(h) {  // IEEE 754 binary16 -> number
    const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return sign * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : sign * Infinity;
    return sign * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  const M = D.meta;
  const E = M.instances, P = M.n_params, L = M.widths.length - 1, C = M.written;
  const emb = D.embedded, K = emb.length;
  const steps = new Int32Array(bytes(D.steps));
  const loss = new Float64Array(bytes(D.loss));
  const exact = new Float64Array(bytes(D.exact));
  const h16 = new Uint16Array(bytes(D.params));
  const free = new Uint8Array(bytes(D.free));
  const X = new Float64Array(bytes(D.x)), Y = new Float64Array(bytes(D.y));
  const dIn = M.widths[0], dOut = M.widths[L];
  const weights = M.layout.filter((e) => e.kind === "weight");
  const biases = M.layout.filter((e) => e.kind === "bias");
  const singular = {};
  for (const name in D.singular) singular[name] = {k: D.singular[name].k, v: new Float32Array(bytes(D.singular[name].values))};

  // parameters of an instance at embedded checkpoint k: exact at the first and last, float16 between
  function theta(inst, k) {
    if (k === 0 || k === K - 1) {
      const j = k === 0 ? 0 : 1;
      return exact.subarray((inst * 2 + j) * P, (inst * 2 + j + 1) * P);
    }
    const out = new Float64Array(P), base = (inst * K + k) * P;
    for (let p = 0; p < P; p++) out[p] = half(h16[base + p]);
    return out;
  }
  function act(z) {
    if (M.activation === "relu") return z > 0 ? z : 0;
    if (M.activation === "tanh") return Math.tanh(z);
    if (M.activation === "leaky_relu") return z > 0 ? z : M.leaky_slope * z;
    return z;
  }
  // forward pass of one input: the output of every layer (hidden ones activated)
  function forward(th, x) {
    let a = x, layers = [];
    for (let l = 0; l < L; l++) {
      const W = weights[l], b = biases[l], nOut = W.shape[0], nIn = W.shape[1];
      const z = new Float64Array(nOut);
      for (let o = 0; o < nOut; o++) {
        let s = th[b.offset + o];
        for (let i = 0; i < nIn; i++) s += th[W.offset + o * nIn + i] * a[i];
        z[o] = l < L - 1 ? act(s) : s;
      }
      layers.push(z);
      a = z;
    }
    return layers;
  }

  // ------------------------------------------------------------ small plotting helpers
  const PAD = {l: 56, r: 12, t: 10, b: 34};
  function axes(canvas, xr, yr, opts) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    const lx = opts && opts.logx, ly = opts && opts.logy;
    const tx = (v) => lx ? Math.log10(v) : v, ty = (v) => ly ? Math.log10(v) : v;
    const x0 = tx(xr[0]), x1 = tx(xr[1]), y0 = ty(yr[0]), y1 = ty(yr[1]);
    const X = (v) => PAD.l + (tx(v) - x0) / ((x1 - x0) || 1) * (w - PAD.l - PAD.r);
    const Y = (v) => h - PAD.b - (ty(v) - y0) / ((y1 - y0) || 1) * (h - PAD.t - PAD.b);
    ctx.strokeStyle = "#888";
    ctx.lineWidth = 1;
    ctx.strokeRect(PAD.l, PAD.t, w - PAD.l - PAD.r, h - PAD.t - PAD.b);
    ctx.fillStyle = "#444";
    ctx.font = "11px sans-serif";
    const ticks = (a, b, log) => {
      if (log) { const out = []; for (let e = Math.floor(a); e <= Math.ceil(b); e++) out.push(Math.pow(10, e)); return out; }
      const span = b - a || 1, step = Math.pow(10, Math.floor(Math.log10(span / 4)));
      const k = span / step > 8 ? 2 * step : step, out = [];
      for (let v = Math.ceil(a / k) * k; v <= b + 1e-12; v += k) out.push(v);
      return out;
    };
    for (const v of ticks(x0, x1, lx)) { if (tx(v) < x0 - 1e-9 || tx(v) > x1 + 1e-9) continue;
      ctx.fillText(fmt(v), X(v) - 12, h - PAD.b + 14); }
    for (const v of ticks(y0, y1, ly)) { if (ty(v) < y0 - 1e-9 || ty(v) > y1 + 1e-9) continue;
      ctx.fillText(fmt(v), 4, Y(v) + 4); }
    if (opts && opts.xlabel) ctx.fillText(opts.xlabel, PAD.l + (w - PAD.l - PAD.r) / 2 - 20, h - 4);
    if (opts && opts.ylabel) { ctx.save(); ctx.translate(11, PAD.t + (h - PAD.t - PAD.b) / 2 + 20);
      ctx.rotate(-Math.PI / 2); ctx.fillText(opts.ylabel, 0, 0); ctx.restore(); }
    return {ctx, X, Y};
  }
  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a >= 1e4 || a < 1e-2 ? v.toExponential(0) : (+v.toPrecision(3)).toString();
  }
  function line(ctx, xs, ys, X, Y, colour, width, dash) {
    ctx.strokeStyle = colour; ctx.lineWidth = width || 1.5; ctx.setLineDash(dash || []);
    ctx.beginPath();
    let started = false;
    for (let i = 0; i < xs.length; i++) {
      const px = X(xs[i]), py = Y(ys[i]);
      if (!isFinite(px) || !isFinite(py)) { started = false; continue; }
      if (!started) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
    }
    ctx.stroke(); ctx.setLineDash([]);
  }
  function diverging(v, vmax) {  // blue (negative) - white - red (positive)
    const t = Math.max(-1, Math.min(1, vmax > 0 ? v / vmax : 0));
    const r = t > 0 ? 255 : Math.round(255 * (1 + t)), b = t < 0 ? 255 : Math.round(255 * (1 - t));
    const g = Math.round(255 * (1 - Math.abs(t)));
    return `rgb(${Math.round(r * 0.85 + 20)},${Math.round(g * 0.85 + 20)},${Math.round(b * 0.85 + 20)})`;
  }
  const MAX_EDGES = 2000;  // more edges than this and only the largest are drawn (the page says so)
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  // ------------------------------------------------------------ state
  const state = {instance: 0, k: K - 1, colour: "weight", hist: "all", playing: false, speed: 1};
  const slider = document.getElementById("slider");
  slider.max = String(K - 1);
  const instSel = document.getElementById("instance");
  for (let e = 0; e < E; e++) { const o = document.createElement("option"); o.value = e; o.textContent = e; instSel.appendChild(o); }
  const histSel = document.getElementById("hist-layer");
  for (const name of ["all"].concat(weights.map((w) => w.name))) {
    const o = document.createElement("option"); o.value = name; o.textContent = name === "all" ? "all weights" : name;
    histSel.appendChild(o);
  }

  function readFragment() {
    const f = new URLSearchParams(location.hash.replace(/^#/, ""));
    if (f.has("instance")) { const e = parseInt(f.get("instance"), 10); if (e >= 0 && e < E) state.instance = e; }
    if (f.has("checkpoint")) {
      const c = f.get("checkpoint");
      if (c === "last") state.k = K - 1;
      else {  // the run's checkpoint index; the nearest embedded one
        const want = parseInt(c, 10);
        if (isFinite(want)) { let best = 0; for (let k = 0; k < K; k++) if (Math.abs(emb[k] - want) < Math.abs(emb[best] - want)) best = k; state.k = best; }
      }
    }
    if (f.get("colour") === "change") state.colour = "change";
  }
  function writeFragment() {
    const c = state.k === K - 1 ? "last" : String(emb[state.k]);
    const frag = `#instance=${state.instance}&checkpoint=${c}` + (state.colour === "change" ? "&colour=change" : "");
    if (location.hash !== frag) history.replaceState(null, "", frag);
  }

  // ------------------------------------------------------------ views
  const netSvg = document.getElementById("network");
  function drawNetwork(th, th0) {
    const W = netSvg.clientWidth || 900, H = 420, ns = "http://www.w3.org/2000/svg";
    while (netSvg.firstChild) netSvg.removeChild(netSvg.firstChild);
    netSvg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const pos = (l, u) => {  // layer l (0 = inputs), unit u: columns left to right, units top to bottom
      const n = M.widths[l];
      return [40 + l * (W - 80) / L, n === 1 ? H / 2 : 20 + u * (H - 40) / (n - 1)];
    };
    const edges = [];
    for (let l = 0; l < L; l++) {
      const w = weights[l];
      for (let o = 0; o < w.shape[0]; o++) for (let i = 0; i < w.shape[1]; i++) {
        const p = w.offset + o * w.shape[1] + i;
        if (!free[p]) continue;
        edges.push([l, o, i, state.colour === "change" ? th[p] - th0[p] : th[p]]);
      }
    }
    let shown = edges;
    const note = document.getElementById("edge-note");
    if (edges.length > MAX_EDGES) {
      shown = edges.slice().sort((a, b) => Math.abs(b[3]) - Math.abs(a[3])).slice(0, MAX_EDGES);
      note.textContent = `Showing the ${MAX_EDGES} largest of ${edges.length} edges (by |${state.colour === "change" ? "change" : "weight"}|), so that the page stays responsive.`;
    } else note.textContent = `${edges.length} edges.`;
    let vmax = 0;
    for (const e of shown) vmax = Math.max(vmax, Math.abs(e[3]));
    for (const e of shown) {
      const [x1, y1] = pos(e[0], e[2]), [x2, y2] = pos(e[0] + 1, e[1]);
      const ln = document.createElementNS(ns, "line");
      ln.setAttribute("x1", x1); ln.setAttribute("y1", y1); ln.setAttribute("x2", x2); ln.setAttribute("y2", y2);
      ln.setAttribute("stroke", diverging(e[3], vmax));
      ln.setAttribute("stroke-width", (0.3 + 3.2 * Math.abs(e[3]) / (vmax || 1)).toFixed(2));
      netSvg.appendChild(ln);
    }
    let bmax = 0;
    for (const b of biases) for (let o = 0; o < b.shape[0]; o++) bmax = Math.max(bmax, Math.abs(th[b.offset + o]));
    for (let l = 0; l <= L; l++) for (let u = 0; u < M.widths[l]; u++) {
      const [x, y] = pos(l, u);
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", x); c.setAttribute("cy", y); c.setAttribute("r", M.widths[l] > 40 ? 3 : 7);
      c.setAttribute("fill", l === 0 ? "#ddd" : diverging(th[biases[l - 1].offset + u], bmax));
      c.setAttribute("stroke", "#333"); c.setAttribute("stroke-width", "0.6");
      netSvg.appendChild(c);
    }
    document.getElementById("edge-what").textContent = state.colour === "change" ? "change since initialization" : "weight";
    document.getElementById("network-legend").textContent =
      `red: positive, blue: negative; strongest ${fmt(vmax)} (edges), ${fmt(bmax)} (biases).` + (M.mesh_k ? ` Mesh net: each neuron wired to its ${M.mesh_k} nearest neighbours.` : "");
  }

  const grid = [];
  if (dIn === 1) for (let i = 0; i < 201; i++) grid.push(M.x_range[0] + (M.x_range[1] - M.x_range[0]) * i / 200);
  function drawOutput(th) {
    const canvas = document.getElementById("output"), note = document.getElementById("output-note");
    const curve = document.getElementById("output-curve");
    if (dIn !== 1) {
      canvas.hidden = true;
      note.textContent = `The network has ${dIn} inputs: its output over the input range is not drawn here.`;
      return;
    }
    const ys = grid.map((x) => forward(th, [x])[L - 1][0]);
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < Y.length; i += dOut) { lo = Math.min(lo, Y[i]); hi = Math.max(hi, Y[i]); }
    for (const v of ys) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const pad = 0.05 * (hi - lo || 1);
    const {ctx, X: px, Y: py} = axes(canvas, M.x_range, [lo - pad, hi + pad], {xlabel: "x", ylabel: "output"});
    ctx.fillStyle = "rgba(120,120,120,0.35)";
    for (let i = 0; i < D.n_points; i++) ctx.fillRect(px(X[i * dIn]) - 1, py(Y[i * dOut]) - 1, 2, 2);
    line(ctx, grid, ys, px, py, "#d62728", 2);
    curve.dataset.x = JSON.stringify(grid);
    curve.dataset.y = JSON.stringify(ys);
    note.textContent = `Grey: ${D.n_points} of the ${D.n_points_total} training points (the target's values); red: the network's output.`;
  }
  function drawResponses(th) {
    const box = document.getElementById("responses");
    box.innerHTML = "";
    if (dIn !== 1 || L < 2) { box.textContent = dIn !== 1 ? "Shown for networks with one input." : "No hidden layer."; return; }
    const acts = grid.map((x) => forward(th, [x]));
    const wrap = document.createElement("div"); wrap.className = "small-multiples";
    for (let l = 0; l < L - 1; l++) {
      const n = M.widths[l + 1];
      const c = document.createElement("canvas"); c.width = 260; c.height = 150;
      let lo = 0, hi = 0;
      for (const a of acts) for (let u = 0; u < n; u++) { lo = Math.min(lo, a[l][u]); hi = Math.max(hi, a[l][u]); }
      const {ctx, X: px, Y: py} = axes(c, M.x_range, [lo, hi || 1], {xlabel: `hidden layer ${l + 1} (${n} neurons)`});
      for (let u = 0; u < Math.min(n, 64); u++) line(ctx, grid, acts.map((a) => a[l][u]), px, py, PALETTE[u % PALETTE.length], 1);
      wrap.appendChild(c);
    }
    box.appendChild(wrap);
  }
  function drawHistogram(th) {
    const canvas = document.getElementById("histogram"), note = document.getElementById("hist-note");
    const counts = new Array(40).fill(0);
    let below = 0, above = 0, total = 0;
    for (const w of weights) {
      if (state.hist !== "all" && w.name !== state.hist) continue;
      const n = w.shape[0] * w.shape[1];
      for (let j = 0; j < n; j++) {
        if (!free[w.offset + j]) continue;
        const v = th[w.offset + j];
        total++;
        if (v < -5) below++; else if (v >= 5) above++; else counts[Math.min(39, Math.floor((v + 5) / 0.25))]++;
      }
    }
    const top = Math.max(1, ...counts);
    const {ctx, X: px, Y: py} = axes(canvas, [-5, 5], [0, top * 1.05], {xlabel: "weight value", ylabel: "count"});
    ctx.fillStyle = "#4c78a8";
    for (let b = 0; b < 40; b++) {
      const x0 = px(-5 + 0.25 * b), x1 = px(-5 + 0.25 * (b + 1));
      ctx.fillRect(x0 + 0.5, py(counts[b]), x1 - x0 - 1, py(0) - py(counts[b]));
    }
    note.textContent = `${total} weights; outside [-5, 5): ${below} below, ${above} above.`;
  }
  function drawLoss() {
    const canvas = document.getElementById("losscurve");
    const xs = [], ys = [];
    for (let c = 0; c < C; c++) { const v = loss[state.instance * C + c]; if (v > 0 && isFinite(v)) { xs.push(steps[c] + 1); ys.push(v); } }
    if (!xs.length) return;
    const {ctx, X: px, Y: py} = axes(canvas, [1, Math.max(2, xs[xs.length - 1])], [Math.min(...ys) * 0.8, Math.max(...ys) * 1.25],
      {logx: true, logy: true, xlabel: "step + 1", ylabel: "MSE"});
    line(ctx, xs, ys, px, py, "#1f77b4", 1.5);
    const s = steps[emb[state.k]] + 1;
    ctx.strokeStyle = "#d62728"; ctx.beginPath(); ctx.moveTo(px(s), PAD.t); ctx.lineTo(px(s), canvas.height - PAD.b); ctx.stroke();
  }
  function drawSingular() {
    const box = document.getElementById("singular");
    box.innerHTML = "";
    const wrap = document.createElement("div"); wrap.className = "small-multiples";
    for (const w of weights) {
      const s = singular[w.name];
      if (!s || s.k < 2) continue;
      const at = (k) => Array.from(s.v.subarray((state.instance * K + k) * s.k, (state.instance * K + k + 1) * s.k));
      const now = at(state.k), first = at(0);
      const pos = now.concat(first).filter((v) => v > 0);
      if (!pos.length) continue;
      const c = document.createElement("canvas"); c.width = 260; c.height = 150;
      const idx = now.map((_, i) => i + 1);
      const {ctx, X: px, Y: py} = axes(c, [1, Math.max(2, s.k)], [Math.min(...pos) * 0.8, Math.max(...pos) * 1.25],
        {logy: true, xlabel: `${w.name}: index i`});
      line(ctx, idx, first, px, py, "#999", 1, [4, 3]);
      line(ctx, idx, now, px, py, "#d62728", 1.5);
      wrap.appendChild(c);
    }
    box.appendChild(wrap);
    if (!wrap.childNodes.length) box.textContent = "No matrix with two or more rows and columns.";
  }

  // ------------------------------------------------------------ update
  function update() {
    const th = theta(state.instance, state.k), th0 = theta(state.instance, 0);
    slider.value = String(state.k);
    instSel.value = String(state.instance);
    const c = emb[state.k];
    const stepEl = document.getElementById("step"), lossEl = document.getElementById("loss");
    stepEl.textContent = String(steps[c]);
    stepEl.dataset.value = String(steps[c]);
    const v = loss[state.instance * C + c];
    lossEl.textContent = isFinite(v) ? v.toPrecision(6) : "not recorded";
    lossEl.dataset.value = isFinite(v) ? String(v) : "";
    drawNetwork(th, th0);
    drawOutput(th);
    drawResponses(th);
    drawHistogram(th);
    drawLoss();
    drawSingular();
    writeFragment();
  }

  slider.addEventListener("input", () => { state.k = parseInt(slider.value, 10); update(); });
  instSel.addEventListener("change", () => { state.instance = parseInt(instSel.value, 10); update(); });
  histSel.addEventListener("change", () => { state.hist = histSel.value; update(); });
  document.getElementById("colour").addEventListener("change", (ev) => { state.colour = ev.target.value; update(); });
  document.getElementById("speed").addEventListener("change", (ev) => { state.speed = parseInt(ev.target.value, 10); });
  const playBtn = document.getElementById("play");
  let timer = null;
  playBtn.addEventListener("click", () => {
    state.playing = !state.playing;
    playBtn.textContent = state.playing ? "pause" : "play";
    playBtn.setAttribute("aria-pressed", String(state.playing));
    if (timer) { clearInterval(timer); timer = null; }
    if (state.playing) {
      if (state.k >= K - 1) state.k = 0;
      timer = setInterval(() => {
        state.k = Math.min(K - 1, state.k + state.speed);
        update();
        if (state.k >= K - 1) playBtn.click();
      }, 120);
    }
  });
  window.addEventListener("hashchange", () => { readFragment(); applyToSlider(); });
  // moving the slider is what a fragment does: the same input event, the same code path
  function applyToSlider() {
    slider.value = String(state.k);
    slider.dispatchEvent(new Event("input"));
  }

  // ------------------------------------------------------------ the side panel and the banner
  const banner = document.getElementById("banner");
  if (M.status !== "complete") {
    banner.hidden = false;
    banner.textContent = M.status === "failed"
      ? `This run failed: ${M.reason}. Showing the ${C} checkpoints it kept.`
      : `This run is ${M.status}: showing the ${C} of ${M.total} checkpoints written so far.`;
  }
  document.getElementById("thinning").textContent = K < C
    ? `Showing ${K} of the ${C} checkpoints (evenly spaced; the first and last exactly, the others as 16-bit numbers); the loss curve has all ${C}.`
    : `All ${C} checkpoints (the first and last exactly, the others as 16-bit numbers).`;
  document.getElementById("meta").textContent =
    `${M.run}\nstatus: ${M.status}${M.reason ? " (" + M.reason + ")" : ""}\nnetwork: ${M.widths.join("-")}, ${M.activation}, ${P} parameters\n` +
    `instances: ${E}; checkpoints: ${C} of ${M.total}; dtype: ${M.dtype}; target: ${M.target}` +
    (M.clipped_values ? `\n${M.clipped_values} values beyond +-60000 are clipped in the drawing` : "");
  document.getElementById("config").textContent = JSON.stringify(D.config, null, 1);
  const vbox = document.getElementById("verdicts");
  if (!D.verdicts.length) vbox.textContent = "None computed for this run (claims are judged on finished runs of 16 or more instances).";
  for (const v of D.verdicts) {
    const div = document.createElement("div");
    div.className = "verdict " + v.status;
    const b = document.createElement("b"); b.textContent = v.claim + ": " + v.status;
    const p = document.createElement("p"); p.textContent = (v.headline ? v.headline + ". " : "") + (v.reason || "");
    div.appendChild(b); div.appendChild(p); vbox.appendChild(div);
  }

  readFragment();
  document.getElementById("colour").value = state.colour;
  applyToSlider();
})();
