/* moodstream charts: the 8 emotion probabilities of one face track over time, on a canvas.
   Plain JS, no dependencies; used by the live dashboard and by `analyze --report` pages (inlined there).
   points: [[t_s, p_anger, p_contempt, ..., p_surprise], ...] with probabilities in percent. */
"use strict";
window.moodChart = (() => {
  const LABELS = ["anger", "contempt", "disgust", "fear", "happiness", "neutrality", "sadness", "surprise"];
  const COLORS = {anger: "rgb(230,40,40)", contempt: "rgb(160,80,200)", disgust: "rgb(110,160,30)",
    fear: "rgb(240,120,220)", happiness: "rgb(230,180,0)", neutrality: "rgb(170,170,170)",
    sadness: "rgb(40,110,240)", surprise: "rgb(0,190,190)"};
  const PAD = {left: 30, right: 6, top: 6, bottom: 16};

  function tickStep(span) {
    const raw = Math.max(span, 1e-3) / 6, base = Math.pow(10, Math.floor(Math.log10(raw)));
    return [1, 2, 5, 10].map((m) => m * base).find((s) => s >= raw);
  }

  /* Draw; returns a function mapping a canvas x (CSS pixels) to a time, for clicks.
     opts: {t0, t1, cursor (time of a marker), episodes [{emotion, start_s, end_s}]} */
  function draw(canvas, points, opts) {
    opts = opts || {};
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 300, h = canvas.clientHeight || 90;
    if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
    if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const t0 = opts.t0 !== undefined ? opts.t0 : (points.length ? points[0][0] : 0);
    let t1 = opts.t1 !== undefined ? opts.t1 : (points.length ? points[points.length - 1][0] : 1);
    if (t1 <= t0) t1 = t0 + 1;
    const pw = w - PAD.left - PAD.right, ph = h - PAD.top - PAD.bottom;
    const x = (t) => PAD.left + (t - t0) / (t1 - t0) * pw;
    const y = (p) => PAD.top + (1 - p / 100) * ph;
    ctx.font = "10px sans-serif";
    ctx.fillStyle = "#666";
    ctx.strokeStyle = "#ddd";
    ctx.lineWidth = 1;
    for (const p of [0, 50, 100]) {
      ctx.beginPath(); ctx.moveTo(PAD.left, y(p)); ctx.lineTo(w - PAD.right, y(p)); ctx.stroke();
      ctx.fillText(p + "%", 2, y(p) + 3);
    }
    const step = tickStep(t1 - t0);
    for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
      ctx.fillText((Math.round(t * 100) / 100) + "s", x(t) - 6, h - 3);
    }
    for (const e of opts.episodes || []) {  // an episode: a tinted band over its span
      ctx.fillStyle = COLORS[e.emotion] || "#999";
      ctx.globalAlpha = 0.15;
      ctx.fillRect(x(e.start_s), PAD.top, Math.max(2, x(e.end_s) - x(e.start_s)), ph);
      ctx.globalAlpha = 1;
    }
    // a gap much longer than the usual step (the face was not seen) breaks the lines
    const steps = [];
    for (let i = 1; i < points.length; i++) steps.push(points[i][0] - points[i - 1][0]);
    steps.sort((a, b) => a - b);
    const gap = steps.length ? Math.max(steps[Math.floor(steps.length / 2)] * 4, 0.5) : Infinity;
    LABELS.forEach((label, k) => {
      ctx.strokeStyle = COLORS[label];
      ctx.lineWidth = label === "neutrality" ? 1 : 1.6;
      ctx.beginPath();
      points.forEach((pt, i) => {
        const broken = i === 0 || pt[0] - points[i - 1][0] > gap;
        if (broken) ctx.moveTo(x(pt[0]), y(pt[k + 1])); else ctx.lineTo(x(pt[0]), y(pt[k + 1]));
        if (points.length === 1) ctx.lineTo(x(pt[0]) + 2, y(pt[k + 1]));
      });
      ctx.stroke();
    });
    if (opts.cursor !== undefined && opts.cursor !== null && opts.cursor >= t0 && opts.cursor <= t1) {
      ctx.strokeStyle = "#000"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x(opts.cursor), PAD.top); ctx.lineTo(x(opts.cursor), PAD.top + ph); ctx.stroke();
    }
    return (cssX) => t0 + Math.min(1, Math.max(0, (cssX - PAD.left) / pw)) * (t1 - t0);
  }

  /* A legend: one coloured swatch and its label per emotion (text nodes only). */
  function legend() {
    const box = document.createElement("div");
    box.className = "legend";
    for (const label of LABELS) {
      const item = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = COLORS[label];
      item.appendChild(sw);
      item.appendChild(document.createTextNode(label));
      box.appendChild(item);
    }
    return box;
  }

  return {LABELS, COLORS, draw, legend};
})();
