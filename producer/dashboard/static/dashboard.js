/* moodstream dashboard page. Every text from the server (source names, job ids, errors, worker names)
   goes into the page with textContent or canvas fillText, never as HTML. What the page keeps is bounded:
   MAX_SOURCES sources, MAX_PEOPLE people per source, MAX_POINTS points per timeline. */
"use strict";
(() => {
  const MAX_SOURCES = 16, MAX_PEOPLE = 24, MAX_POINTS = 240, FRAME_EVERY_MS = 1500, RENDER_EVERY_MS = 250;
  const state = {sources: new Map(), fleet: null, redis: {ok: null, error: null}, live: false, lastEvent: 0};
  const cards = new Map();  // source name -> DOM card and its drawing state
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  const fmtT = (t) => (t === null || t === undefined) ? "-" : (Math.round(t * 10) / 10).toFixed(1) + " s";
  const count = (n, one, many) => n + " " + (n === 1 ? one : many);  /* "1 result", "2 results" */
  const nFrames = (n) => count(n, "frame", "frames");
  /* a track's time: a still image's (a summary track with a page, a face of a result with one) has none */
  const when = (still, first, last) => still ? "still image" : fmtT(first) + "–" + fmtT(last);
  const ago = (ms) => {
    const fleetNow = state.fleet ? state.fleet.time_ms : Date.now();
    const s = Math.max(0, Math.round((fleetNow - ms) / 1000));
    return s < 90 ? s + " s ago" : Math.round(s / 60) + " min ago";
  };

  // --- the model, from the server's events ------------------------------------------------
  function mergePerson(old, p) {
    let points = old ? old.points.concat(p.points) : p.points.slice();
    while (points.length > MAX_POINTS) points = points.filter((_, i) => i % 2 === 0);
    return Object.assign({}, p, {points});
  }

  function applySource(s, full) {
    const prev = state.sources.get(s.name);
    let cur = prev;
    // an update carries "summary" only when it changed: a new run keeps the one shown until then
    if (!cur || full || (cur.runs !== undefined && s.runs !== cur.runs)) cur = {people: new Map(), summary: full || !prev ? null : prev.summary};
    for (const k of ["name", "first_ms", "last_ms", "results", "errors", "tracked", "latest", "summary", "runs", "run"]) {
      if (k in s) cur[k] = s[k];
    }
    if ("summary" in s) cur.summaryRuns = cur.runs;  // the run it came in (a stage of before numbers none)
    for (const p of s.people || []) cur.people.set(p.track_id, mergePerson(full || p.replace ? null : cur.people.get(p.track_id), p));
    if (cur.people.size > MAX_PEOPLE) {
      const keep = [...cur.people.values()].sort((a, b) => b.last_t - a.last_t).slice(0, MAX_PEOPLE);
      cur.people = new Map(keep.map((p) => [p.track_id, p]));
    }
    cur.version = (cur.version || 0) + 1;  // cards redraw only what changed
    state.sources.set(s.name, cur);
  }

  function bound() {
    if (state.sources.size <= MAX_SOURCES) return;
    const keep = [...state.sources.values()].sort((a, b) => b.last_ms - a.last_ms).slice(0, MAX_SOURCES);
    state.sources = new Map(keep.map((s) => [s.name, s]));
  }

  function onSnapshot(ev) {
    const snap = JSON.parse(ev.data);
    state.sources = new Map();
    for (const s of snap.sources) applySource(s, true);
    state.fleet = snap.fleet;
    state.redis = snap.redis;
    bound();
    changed();
  }

  function onUpdate(ev) {
    const batch = JSON.parse(ev.data);
    for (const name of batch.evicted || []) state.sources.delete(name);
    for (const s of batch.sources) applySource(s, false);
    bound();
    changed();
  }

  function onFleet(ev) {
    const f = JSON.parse(ev.data);
    if (f.fleet) state.fleet = f.fleet;
    state.redis = f.redis;
    changed();
  }

  // --- drawing ---------------------------------------------------------------------------------
  let dirty = false;
  function changed() { dirty = true; }
  setInterval(() => { if (dirty || cards.size) { dirty = false; render(); } }, RENDER_EVERY_MS);

  function render() {
    renderBanner();
    renderFleet();
    const list = [...state.sources.values()].sort((a, b) => b.last_ms - a.last_ms);
    $("empty").hidden = list.length > 0;
    const main = $("sources");
    for (const [name, card] of cards) {
      if (!state.sources.has(name)) { card.root.remove(); cards.delete(name); }
    }
    list.forEach((s, i) => {
      let card = cards.get(s.name);
      if (!card) { card = makeCard(s.name); cards.set(s.name, card); }
      if (main.children[i] !== card.root) main.insertBefore(card.root, main.children[i] || null);
      if (card.version !== s.version || card.imageJob !== card.drawnJob) {
        fillCard(card, s);
        card.version = s.version;
        card.drawnJob = card.imageJob;
      } else {
        fillMeta(card, s);
        maybeFetchFrame(card, s);  // one skipped by the 1.5 s throttle is fetched once the throttle allows
      }
    });
  }

  function renderBanner() {
    const b = $("banner");
    let text = "";
    if (!state.live) text = "Connection to the dashboard server lost; reconnecting…";
    else if (state.redis && state.redis.ok === false) {
      text = "Redis is unreachable (" + (state.redis.error || "?") + "); showing what was read before; retrying…";
    }
    b.textContent = text;
    b.hidden = !text;
  }

  function renderFleet() {
    const f = state.fleet;
    const box = $("fleet");
    box.replaceChildren();
    if (!f) { box.appendChild(el("p", "muted", "Fleet: waiting for the first figures…")); return; }
    const head = el("div", "fleet-figures");
    const fig = (label, value) => { const d = el("div", "figure"); d.appendChild(el("b", null, value)); d.appendChild(el("span", null, label)); head.appendChild(d); };
    fig("workers busy / idle", f.busy + " / " + f.idle + (f.workers.length > f.busy + f.idle ? " (+" + (f.workers.length - f.busy - f.idle) + ")" : ""));
    fig("backlog (intake + lag + pending)", f.backlog.total + (f.backlog.exact ? "" : "+") + " = " +
        (f.backlog.intake || 0) + " + " + f.backlog.lag + " + " + f.backlog.pending);
    fig("frames/s now", f.frames_per_s);
    fig("dead letters", f.dead.length);
    fig("prefix · redis", f.prefix + " · " + ((f.redis && f.redis.version) || "?"));
    box.appendChild(head);
    for (const line of f.track_lines || []) box.appendChild(el("p", "track-line", line));  // as `moodstream status` says them
    if (f.workers.length) {
      const t = el("table", "workers");
      const hr = el("tr");
      for (const h of ["worker", "status", "device", "served", "last beat"]) hr.appendChild(el("th", null, h));
      t.appendChild(hr);
      for (const w of f.workers) {
        const tr = el("tr");
        for (const v of [w.worker, w.status, w.device, w.served === null ? "-" : w.served, w.age_s === null ? "-" : w.age_s + " s"]) tr.appendChild(el("td", null, v));
        t.appendChild(tr);
      }
      box.appendChild(t);
    } else {
      box.appendChild(el("p", "muted", "No live worker: start one with `moodstream worker`."));
    }
    const reasons = Object.entries(f.dead.by_reason);
    if (reasons.length) {
      /* a reason, a detail, a job id, a worker's name: each its own run of text (<bdi>), as a producer or worker
         named it: an RTL override in one reversed the text after it ("51" for another reason's 15) */
      const line = el("p", null, "Dead letters by reason: ");
      reasons.forEach(([k, v], i) => line.append(...(i ? [", "] : []), el("bdi", null, k), " " + v));
      if (f.dead.note) line.append(" (" + f.dead.note + ")");
      box.appendChild(line);
      const ul = el("ul", "dead");
      for (const d of f.dead.last) {
        const li = el("li");
        li.append(el("bdi", null, d.reason), ": ", el("bdi", null, d.detail));
        if (d.job_id) li.append("  [job ", el("bdi", null, d.job_id), "]");
        if (d.worker) li.append("  [", el("bdi", null, d.worker), "]");
        ul.appendChild(li);
      }
      box.appendChild(ul);
    }
  }

  function makeCard(name) {
    const root = el("section", "source");
    const h = el("h2", "name", name);
    const meta = el("div", "meta");
    const row = el("div", "row");
    const framebox = el("div", "framebox");
    const canvas = el("canvas", "frame");
    const note = el("div", "note");
    framebox.appendChild(canvas);
    framebox.appendChild(note);
    const people = el("div", "people");
    row.appendChild(framebox);
    row.appendChild(people);
    const others = el("details", "others");
    others.appendChild(el("summary"));
    const othersList = el("div");
    others.appendChild(othersList);
    root.append(h, meta, row, others);
    return {root, meta, canvas, note, people, others, othersList, rows: new Map(), image: null, imageJob: null,
            fetching: false, fetchedAt: 0, frameNote: ""};
  }

  function fillCard(card, s) {
    fillMeta(card, s);
    maybeFetchFrame(card, s);
    drawFrame(card, s);
    fillPeople(card, s);
  }

  function fillMeta(card, s) {
    const span = s.latest && s.latest.t !== null && s.latest.t !== undefined ? " · at " + fmtT(s.latest.t) : "";
    card.meta.textContent = count(s.results, "result", "results") + (s.errors ? " (" + count(s.errors, "error", "errors") + ")" : "") +
      (s.latest ? " · frame " + s.latest.frame + span : "") + " · last seen " + ago(s.last_ms) +
      (s.tracked ? " · tracked" : " · not tracked (run `moodstream track` for people)") +
      (s.summary ? " · summary published" + (summaryOfThisRun(s) ? "" : " (of the run before)") +
        (s.summary.missing ? " · " + s.summary.missing : "") : "");
  }

  function maybeFetchFrame(card, s) {
    if (!s.latest || card.fetching || s.latest.job === card.imageJob) return;
    if (Date.now() - card.fetchedAt < FRAME_EVERY_MS) return;
    card.fetching = true;
    card.fetchedAt = Date.now();
    const job = s.latest.job;
    fetch("frame?source=" + encodeURIComponent(s.name), {credentials: "same-origin"})
      /* no picture of this frame (trimmed, gone): its boxes on an empty frame, never on the frame before's */
      .then((r) => r.ok ? r.blob().then((b) => createImageBitmap(b)).then((img) => { card.image = img; card.frameNote = ""; })
        : r.json().then((j) => { card.image = null; card.frameNote = j.error || "no picture"; }))
      .catch(() => { card.image = null; card.frameNote = "picture unavailable"; })
      .finally(() => { card.imageJob = job; card.fetching = false; changed(); });
  }

  function drawFrame(card, s) {
    const latest = s.latest;
    const c = card.canvas;
    const size = latest && latest.size ? latest.size : [640, 360];
    const w = 480, h = Math.round(w * size[1] / size[0]);
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    const ctx = c.getContext("2d");
    ctx.fillStyle = "#333";
    ctx.fillRect(0, 0, w, h);
    if (card.image) ctx.drawImage(card.image, 0, 0, w, h);
    card.note.textContent = latest && latest.error ? "error: " + latest.error : card.frameNote;
    if (!latest) return;
    const k = w / size[0];
    ctx.font = "12px sans-serif";
    for (const f of latest.faces) {
      const [x1, y1, x2, y2] = f.box.map((v) => v * k);
      const color = window.moodChart.COLORS[f.emotion] || "#fff";
      ctx.strokeStyle = color; ctx.lineWidth = 2;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const label = (f.track_id !== null && f.track_id !== undefined ? "#" + f.track_id + " " : "") + f.emotion + " " + f.p + "%";
      const tw = ctx.measureText(label).width + 4, ty = y1 >= 16 ? y1 - 16 : y1;
      ctx.fillStyle = color; ctx.fillRect(x1, ty, tw, 15);
      ctx.fillStyle = "#000"; ctx.fillText(label, x1 + 2, ty + 11);
    }
  }

  /* is the summary shown the run's that goes on? Its people are matched to the live tracks by id only then:
     a new run's #0 was hidden as the run before's #0, "not a person" */
  function summaryOfThisRun(s) {
    if (!s.summary) return false;
    if (Number.isInteger(s.summary.run) && Number.isInteger(s.run)) return s.summary.run === s.run;
    return s.summaryRuns === undefined || s.summaryRuns === s.runs;
  }

  function fillPeople(card, s) {
    const summaryTracks = summaryOfThisRun(s) ? s.summary.tracks : [];
    const byId = new Map(summaryTracks.map((t) => [t.track_id, t]));
    const people = [...s.people.values()].filter((p) => !byId.has(p.track_id) || byId.get(p.track_id).person);
    for (const t of summaryTracks) {
      if (t.person && !s.people.has(t.track_id)) people.push({track_id: t.track_id, first_t: t.first_timestamp_s, last_t: t.last_timestamp_s, frames: t.frames, points: [], dominant: t.dominant, still: Number.isInteger(t.page)});
    }
    people.sort((a, b) => a.track_id - b.track_id);
    const seen = new Set();
    if (!people.length) {
      card.people.replaceChildren(el("p", "muted", s.tracked ? "No faces tracked yet." : "People appear once `moodstream track` runs."));
      card.rows.clear();
    } else if (card.people.querySelector("p.muted")) card.people.replaceChildren();
    for (const p of people) {
      seen.add(p.track_id);
      let row = card.rows.get(p.track_id);
      if (!row) {
        row = {root: el("div", "person"), face: el("img", "face"), who: el("div", "who"), chart: el("canvas", "chart"),
          eps: el("div", "episodes")};
        row.root.dataset.trackId = String(p.track_id);
        row.face.alt = "";
        row.face.hidden = true;
        const text = el("div", "body");
        text.append(row.who, row.chart, row.eps);
        row.root.append(row.face, text);
        card.rows.set(p.track_id, row);
        card.people.appendChild(row.root);
      }
      const t = byId.get(p.track_id);
      if (t && typeof t.thumbnail === "string" && t.thumbnail.startsWith("data:image/jpeg;base64,") && row.face.src !== t.thumbnail) {
        row.face.src = t.thumbnail;
        row.face.hidden = false;
      }
      const dominant = t && t.dominant ? t.dominant : p.dominant;
      const still = Boolean(p.still || (t && Number.isInteger(t.page)));
      /* its mean, as the people table and the report give it: "mostly neutrality" read wrong at 31% */
      const summed = t && t.mean_probabilities ? t.mean_probabilities[dominant] : undefined;
      const mean = typeof summed === "number" ? Math.round(100 * summed)
        : (p.mean ? p.mean[window.moodChart.LABELS.indexOf(dominant)] : undefined);
      row.who.textContent = "#" + p.track_id + (p.emotion ? " now " + p.emotion : "") + " · " + (dominant || "?") +
        (typeof mean === "number" ? " (mean " + mean + "%)" : "") + " · " + when(still, p.first_t, p.last_t) + " · " + nFrames(p.frames);
      const episodes = t ? t.episodes : [];
      row.eps.textContent = episodes.length ? "episodes: " + episodes.map((e) => e.emotion + " " + fmtT(e.start_s) + "–" + fmtT(e.end_s) + " (peak " + Math.round(100 * e.peak) + "%)").join(", ") : "";
      row.chart.hidden = still;  // one frame at no time: a time axis would show an empty second
      if (!still) window.moodChart.draw(row.chart, p.points, {episodes});
    }
    for (const [id, row] of card.rows) if (!seen.has(id)) { row.root.remove(); card.rows.delete(id); }
    const others = summaryTracks.filter((t) => !t.person);
    card.others.hidden = !others.length;
    card.others.firstChild.textContent = count(others.length, "other track", "other tracks") + ", not counted as people";
    card.othersList.replaceChildren(...others.map((t) => {
      const d = el("div", "other", "#" + t.track_id + " · " + when(Number.isInteger(t.page), t.first_timestamp_s, t.last_timestamp_s) + " · " + nFrames(t.frames) + " · " + (t.dominant || "") +
        (t.not_person_why ? " · not a person: " + t.not_person_why : ""));
      d.dataset.otherTrackId = String(t.track_id);
      return d;
    }));
  }

  // --- the connection -------------------------------------------------------------------------
  function connect() {
    const es = new EventSource("events");  // reconnects by itself, sending Last-Event-ID
    es.addEventListener("snapshot", (ev) => { state.live = true; onSnapshot(ev); });
    es.addEventListener("update", (ev) => { state.live = true; onUpdate(ev); });
    es.addEventListener("fleet", (ev) => { state.live = true; onFleet(ev); });
    es.onopen = () => { state.live = true; changed(); };
    es.onerror = () => { state.live = false; changed(); };
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("legend").appendChild(window.moodChart.legend());
    connect();
    changed();
  });
})();
