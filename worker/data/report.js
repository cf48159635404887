/* moodstream report page: builds everything from the JSON block with textContent (video and photo names and
   all other texts are data, never HTML); the chart is window.moodChart (the dashboard's chart.js). */
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const fmt = (t) => (Math.round(t * 100) / 100).toFixed(2) + " s";
  const pct = (p) => Math.round(100 * p) + "%";
  const count = (n, one, many) => n + " " + (n === 1 ? one : many);  /* "1 person", "2 people" */
  /* a file beside the page, as a relative URL ('#' and '?' in a name are not its fragment or query) */
  /* a file beside the page, as a relative URL: "./" first, or a name with a colon ("cam:1.webm",
     "2024-01-01T10:30:00.webm") read as a URL of the scheme before it */
  const fileUrl = (name) => "./" + encodeURI(name).replace(/#/g, "%23").replace(/\?/g, "%3F");

  const photos = data.photos || [];
  /* what the run holds, no count of nothing ("2 videos", "1 video, 2 photos"), as the page's title says it */
  const holds = [];
  if (data.videos.length) holds.push(count(data.videos.length, "video", "videos"));
  if (data.images) holds.push(count(data.images, "photo", "photos") +
    (photos.length > data.images ? " (" + photos.length + " pictures: a TIFF's pages each)" : ""));
  document.getElementById("intro").textContent = (holds.join(", ") || "no video or photo") +
    (data.videos.length ? "; click a chart or an episode to see that moment" : "");
  document.getElementById("legend").appendChild(window.moodChart.legend());

  /* the clip plays in the source's time: analysed frame i is first shown at the clip's frame
     clip_frames[i] (held until the next one's; `rate`: the clip's frames/s) */
  function seekTime(v, t) {  /* the clip's time showing the analysed frame nearest to source time t */
    const times = v.times;
    let lo = 0, hi = times.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (times[mid] < t) lo = mid + 1; else hi = mid; }
    if (lo > 0 && Math.abs(times[lo - 1] - t) <= Math.abs(times[lo] - t)) lo -= 1;
    return (v.clip_frames[lo] + 0.5) / v.rate;
  }
  function sourceTime(v, videoT) {  /* the source time of the analysed frame the clip shows at videoT */
    const shown = Math.floor(videoT * v.rate), starts = v.clip_frames;
    let lo = 0, hi = starts.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= shown) lo = mid; else hi = mid - 1; }
    return v.times.length ? v.times[lo] : 0;
  }

  function trackRow(v, t, player, charts, cls) {
    const row = el("div", cls);
    if (cls === "person") row.dataset.trackId = String(t.track_id); else row.dataset.otherTrackId = String(t.track_id);
    const img = el("img");
    img.alt = "track " + t.track_id;
    if (typeof t.thumbnail === "string" && t.thumbnail.startsWith("data:image/jpeg;base64,")) img.src = t.thumbnail;
    const body = el("div", "body");
    const who = el("div", "who");
    who.appendChild(el("b", null, "#" + t.track_id + " " + (t.dominant || "?")));
    const mean = t.mean_probabilities && t.dominant ? t.mean_probabilities[t.dominant] : null;
    who.appendChild(document.createTextNode((mean !== null && mean !== undefined ? " (mean " + pct(mean) + ")" : "") +
      (Number.isInteger(t.shot) ? " · shot " + t.shot : "") +
      " · " + fmt(t.first_timestamp_s) + " – " + fmt(t.last_timestamp_s) + " · " + count(t.frames, "frame", "frames") +
      (t.person ? "" : " · not a person: " + (t.not_person_why || "?"))));
    const chart = el("canvas", "chart");
    const eps = el("div", "episodes");
    if (!t.episodes.length) {  // "neutral throughout" read wrong under a dominant surprise: no emotion led long enough
      eps.appendChild(el("span", "muted", t.dominant === "neutrality" || !t.dominant ? "no episode: neutral throughout"
        : "no episode: no emotion but neutrality led " + data.episode_min_s + " s in a row (" + t.dominant +
          " leads on average)"));
    }
    for (const e of t.episodes) {
      const b = el("button", null, e.emotion + " " + fmt(e.start_s) + "–" + fmt(e.end_s) + ", peak " + pct(e.peak) + " at " + fmt(e.peak_s));
      b.addEventListener("click", () => { player.currentTime = seekTime(v, e.start_s); player.pause(); });
      eps.appendChild(b);
    }
    body.append(who, chart, eps);
    row.append(img, body);
    const t0 = v.times.length ? v.times[0] : 0, t1 = v.times.length ? v.times[v.times.length - 1] : 1;
    const entry = {chart, points: t.points, episodes: t.episodes, t0, t1, toTime: null};
    chart.addEventListener("click", (ev) => {
      if (!entry.toTime) return;
      const r = chart.getBoundingClientRect();
      player.currentTime = seekTime(v, entry.toTime(ev.clientX - r.left));
      player.pause();
    });
    charts.push(entry);
    return row;
  }

  const toc = document.getElementById("toc");
  const main = document.getElementById("videos");
  if (!data.videos.length && !photos.length) main.appendChild(el("p", "muted", "Nothing in this run could be shown."));
  if (data.not_shown && data.not_shown.length) {  /* the inputs that failed, first: why the run exits 1 */
    const box = el("section", "not-shown");
    box.appendChild(el("h2", null, "Not shown (" + data.not_shown.length + ")"));
    const list = el("ul");
    for (const n of data.not_shown) {  /* each its own run of text: a name's RTL override reversed the reason */
      const li = el("li");
      li.append(el("bdi", null, n.source), ": ", el("bdi", null, n.why));
      list.appendChild(li);
    }
    box.appendChild(list);
    main.appendChild(box);
  }
  data.videos.forEach((v, i) => {
    const sec = el("section", "video");
    sec.id = "video-" + i;
    const a = el("a", null, v.source);
    a.href = "#video-" + i;
    toc.appendChild(a);
    sec.appendChild(el("h2", "name", v.source));
    const people = v.tracks.filter((t) => t.person), others = v.tracks.filter((t) => !t.person);
    sec.appendChild(el("div", "meta", count(v.times.length, "frame", "frames") + " analysed · " + count(people.length, "person", "people") + " · " +
      count(others.length, "other track", "other tracks") + " · " + v.size.join("x")));
    const row = el("div", "row");
    const playerBox = el("div", "player");
    const player = el("video");
    player.controls = true;
    player.preload = "auto";
    player.muted = true;
    player.src = fileUrl(v.video);
    playerBox.appendChild(player);
    playerBox.appendChild(el("div", "muted", "clip: " + v.video));
    const list = el("div", "tracks");
    const charts = [];
    if (!people.length) list.appendChild(el("p", "muted", "No person found in this video."));
    for (const t of people) list.appendChild(trackRow(v, t, player, charts, "person"));
    if (others.length) {
      const det = el("details", "others");
      det.appendChild(el("summary", null, count(others.length, "other track", "other tracks") + ", not counted as people (too short or not face-like)"));
      for (const t of others) det.appendChild(trackRow(v, t, player, charts, "other"));
      det.addEventListener("toggle", () => redraw());
      list.appendChild(det);
    }
    row.append(playerBox, list);
    sec.appendChild(row);
    main.appendChild(sec);
    let pending = false;
    function redraw() {
      pending = false;
      const cursor = player.readyState >= 1 ? sourceTime(v, player.currentTime) : null;
      for (const c of charts) {
        if (c.chart.offsetParent === null) continue;  // inside a closed <details>
        c.toTime = window.moodChart.draw(c.chart, c.points, {t0: c.t0, t1: c.t1, cursor, episodes: c.episodes});
      }
    }
    const later = () => { if (!pending) { pending = true; requestAnimationFrame(redraw); } };
    player.addEventListener("timeupdate", later);
    player.addEventListener("seeked", later);
    window.addEventListener("resize", later);
    redraw();
  });

  /* photos: a grid of the annotated JPEGs beside the page (loaded as they scroll into view), each with
     its name and a line per face; past PHOTOS_SHOWN the rest are built when asked (20,000 photos are
     20,000 cards: none made until then) */
  const PHOTOS_SHOWN = 60, FACES_LISTED = 6;
  const STACK = data.labels.filter((l) => l !== "neutrality").concat(data.labels.filter((l) => l === "neutrality"));
  function faceLine(f) {
    const li = el("li", "face");
    const p = f.probabilities || [];
    li.appendChild(el("span", "label", f.label));  /* as drawn on the photo: "#0 happiness 87%" */
    const bar = el("span", "bar");  /* every emotion's share, side by side (neutrality last) */
    bar.title = data.labels.map((l, k) => l + " " + pct(p[k] || 0)).join(", ");
    for (const label of STACK) {
      const share = p[data.labels.indexOf(label)] || 0;
      if (share < 0.005) continue;
      const part = el("i");
      part.style.width = (100 * share).toFixed(1) + "%";
      part.style.background = window.moodChart.COLORS[label] || "#999";
      bar.appendChild(part);
    }
    li.appendChild(bar);
    return li;
  }
  function photoCard(ph, pages) {
    const card = el("figure", "photo");
    if (typeof ph.image === "string") {
      const a = el("a");
      a.href = fileUrl(ph.image);
      a.target = "_blank";
      a.rel = "noopener";
      const img = el("img");
      img.loading = "lazy";
      img.alt = ph.source;
      if (ph.shown) { img.width = ph.shown[0]; img.height = ph.shown[1]; }
      img.src = fileUrl(ph.image);
      a.appendChild(img);
      card.appendChild(a);
    } else {
      card.appendChild(el("div", "missing", "picture not written (see the run's last line)"));
    }
    const cap = el("figcaption");
    const name = el("div", "name");  /* the folder muted, the file's name first to the eye */
    const cut = Math.max(ph.source.lastIndexOf("/"), ph.source.lastIndexOf("\\")) + 1;
    if (cut > 0) name.appendChild(el("span", "dir", ph.source.slice(0, cut)));
    name.appendChild(el("b", null, ph.source.slice(cut)));
    name.title = ph.source;
    cap.appendChild(name);
    cap.appendChild(el("div", "meta", (pages > 1 ? "page " + ph.page + " of " + pages + " · " : "") +
      ph.size.join("x") + (ph.scale ? " (read at 1/" + Math.round(1 / ph.scale) + ")" : "") + " · " + (ph.faces.length ? count(ph.faces.length, "face", "faces") : "no face found")));
    const list = el("ol", "faces");
    for (const f of ph.faces.slice(0, FACES_LISTED)) list.appendChild(faceLine(f));
    cap.appendChild(list);
    if (ph.faces.length > FACES_LISTED) {
      const more = el("details", "more-faces");
      more.appendChild(el("summary", null, count(ph.faces.length - FACES_LISTED, "more face", "more faces")));
      const rest = el("ol", "faces");
      for (const f of ph.faces.slice(FACES_LISTED)) rest.appendChild(faceLine(f));
      more.appendChild(rest);
      cap.appendChild(more);
    }
    card.appendChild(cap);
    return card;
  }
  if (photos.length) {
    const sec = el("section", "photos");
    sec.id = "photos";
    const a = el("a", null, "Photos (" + photos.length + ")");
    a.href = "#photos";
    toc.appendChild(a);
    sec.appendChild(el("h2", null, "Photos (" + photos.length + ")"));
    const nFaces = photos.reduce((n, ph) => n + ph.faces.length, 0);
    sec.appendChild(el("div", "meta", count(nFaces, "face", "faces") + " in " +
      count(photos.length, "picture", "pictures") + " of " + count(data.images, "file", "files") +
      "; click a photo to open it larger"));
    const pages = [];  /* each picture's file's page count (a TIFF's first page counts them) */
    let filePages = 1;  /* not `count`: that is the helper above, used in this block */
    for (const ph of photos) { if (ph.pages !== undefined) filePages = ph.pages; pages.push(filePages); }
    const grid = el("div", "grid");
    const add = (from, to) => {
      for (let i = from; i < to; i++) grid.appendChild(photoCard(photos[i], pages[i]));
    };
    add(0, Math.min(PHOTOS_SHOWN, photos.length));
    sec.appendChild(grid);
    if (photos.length > PHOTOS_SHOWN) {
      const all = el("button", "show-all", "Show all " + photos.length + " photos (" + PHOTOS_SHOWN + " shown)");
      all.addEventListener("click", () => { add(PHOTOS_SHOWN, photos.length); all.remove(); });
      sec.appendChild(all);
    }
    main.appendChild(sec);
  }
})();
