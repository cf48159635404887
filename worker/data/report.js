/* moodstream report page: builds everything from the JSON block with textContent (video names and all
   other texts are data, never HTML); the chart is window.moodChart (the dashboard's chart.js). */
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

  document.getElementById("intro").textContent = data.videos.length + " video(s)" +
    (data.images ? ", " + data.images + " image(s) not shown" : "") + "; click a chart or an episode to see that moment";
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
      " · " + fmt(t.first_timestamp_s) + " – " + fmt(t.last_timestamp_s) + " · " + t.frames + " frames" +
      (t.person ? "" : " · not a person: " + (t.not_person_why || "?"))));
    const chart = el("canvas", "chart");
    const eps = el("div", "episodes");
    if (!t.episodes.length) eps.appendChild(el("span", "muted", "no episode: neutral throughout"));
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
  if (!data.videos.length) main.appendChild(el("p", "muted", "No video in this run: the report shows videos only."));
  if (data.not_shown && data.not_shown.length) {  /* images and unreadable inputs: named, with why */
    /* the inputs that failed first; a folder's photos (2,000 lines put the one failure at line 1,001 and
       the videos below them all) folded into one line past IMAGES_LISTED */
    const IMAGES_LISTED = 20;
    const failed = data.not_shown.filter((n) => !n.image), images = data.not_shown.filter((n) => n.image);
    const box = el("section", "not-shown");
    box.appendChild(el("h2", null, "Not shown (" + data.not_shown.length + ")"));
    const list = el("ul");
    const line = (n) => el("li", null, n.source + ": " + n.why);
    for (const n of failed) list.appendChild(line(n));
    if (images.length <= IMAGES_LISTED) for (const n of images) list.appendChild(line(n));
    box.appendChild(list);
    if (images.length > IMAGES_LISTED) {
      const fold = el("details", "images");
      fold.appendChild(el("summary", null, images.length + " images (the report shows videos)"));
      const names = el("ul");
      for (const n of images) names.appendChild(line(n));
      fold.appendChild(names);
      box.appendChild(fold);
    }
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
    sec.appendChild(el("div", "meta", v.times.length + " frames analysed · " + people.length + " people · " + others.length + " other track(s) · " + v.size.join("x")));
    const row = el("div", "row");
    const playerBox = el("div", "player");
    const player = el("video");
    player.controls = true;
    player.preload = "auto";
    player.muted = true;
    player.src = encodeURI(v.video).replace(/#/g, "%23").replace(/\?/g, "%3F");
    playerBox.appendChild(player);
    playerBox.appendChild(el("div", "muted", "clip: " + v.video));
    const list = el("div", "tracks");
    const charts = [];
    if (!people.length) list.appendChild(el("p", "muted", "No person found in this video."));
    for (const t of people) list.appendChild(trackRow(v, t, player, charts, "person"));
    if (others.length) {
      const det = el("details", "others");
      det.appendChild(el("summary", null, others.length + " other track(s), not counted as people (too short or not face-like)"));
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
})();
