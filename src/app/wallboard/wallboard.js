// vigie wallboard: renders the snapshots of GET /api/v1/wallboard/stream (SSE).
// No framework, no external asset: the page must work on a wall screen off the Internet.
"use strict";

(function () {
  var board = document.getElementById("board");
  var link = document.getElementById("link");
  var clock = document.getElementById("clock");
  var updated = document.getElementById("updated");

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  // Seconds as m:ss (or h:mm:ss from an hour).
  function duration(s) {
    s = Math.max(0, Math.floor(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h > 0 ? h + ":" + two(m) + ":" + two(r) : m + ":" + two(r);
  }

  function localTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return "–"; }
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }

  function percent(sl) {
    return sl.ratio === null || sl.ratio === undefined ? "–" : Math.floor(sl.ratio * 100) + " %";
  }

  function slClass(sl) {
    if (sl.ratio === null || sl.ratio === undefined) { return ""; }
    return sl.ratio >= 0.9 ? "ok" : sl.ratio >= 0.8 ? "warn" : "bad";
  }

  function fig(q, key, text) {
    return '<span class="fig" data-k="' + esc(q + "/" + key) + '">' + esc(text) + "</span>";
  }

  function tile(cls, label, en, body, sub) {
    return '<div class="tile ' + cls + '"><div class="label">' + label + " <small>" + en +
      "</small></div>" + body + (sub ? '<div class="sub">' + sub + "</div>" : "") + "</div>";
  }

  var SEATS = [
    ["available", "Disponibles", "available"],
    ["ringing", "Sonnerie", "ringing"],
    ["on_call", "En appel", "on call"],
    ["wrap_up", "Post-appel", "wrap-up"],
    ["on_break", "En pause", "on break"],
    ["logged_out", "Déconnectés", "logged out"]
  ];

  function renderQueue(q) {
    var n = q.name;
    var waitCls = q.waiting > 0 ? "warn" : "ok";
    var longCls = q.longest_wait_seconds > q.service_level_threshold_seconds ? "bad" :
      q.longest_wait_seconds > 0 ? "warn" : "ok";
    var html = '<section class="queue" data-queue="' + esc(n) + '"><h2>File ' + esc(n) + "</h2>";
    html += '<div class="tiles">';
    html += tile(waitCls, "En attente", "waiting", fig(n, "waiting", q.waiting));
    html += tile(longCls, "Attente max", "longest wait",
      fig(n, "longest_wait", duration(q.longest_wait_seconds)),
      "seuil <small>threshold</small> " + q.service_level_threshold_seconds + " s");
    html += tile(slClass(q.service_level["15m"]), "Niveau de service 15 min", "service level",
      fig(n, "sl_15m", percent(q.service_level["15m"])),
      fig(n, "sl_15m_calls", q.service_level["15m"].calls) + " appels <small>calls</small>");
    html += tile(slClass(q.service_level["1h"]), "Niveau de service 1 h", "service level",
      fig(n, "sl_1h", percent(q.service_level["1h"])),
      fig(n, "sl_1h_calls", q.service_level["1h"].calls) + " appels <small>calls</small>");
    html += tile("", "Répondus aujourd'hui", "answered today", fig(n, "answered", q.today.answered),
      "reçus <small>received</small> " + fig(n, "received", q.today.received));
    html += tile(q.today.abandoned > 0 ? "warn" : "", "Abandonnés aujourd'hui", "abandoned today",
      fig(n, "abandoned", q.today.abandoned),
      "débordés <small>overflowed</small> " + fig(n, "overflowed", q.today.overflowed));
    html += "</div><div class=\"seats\">";
    SEATS.forEach(function (s) {
      html += '<div class="seat ' + s[0] + '">' + s[1] + " <small>" + s[2] + "</small>" +
        fig(n, "seats_" + s[0], q.seats[s[0]]) + "</div>";
    });
    html += '</div><div class="abandoned"><table><thead><tr><th>Abandons récents <small>recent abandoned</small></th>' +
      "<th>Heure <small>time</small></th><th>Attente <small>wait</small></th><th>Appelant <small>caller</small></th>" +
      "<th>Phase</th></tr></thead><tbody>";
    if (q.recent_abandoned.length === 0) {
      html += '<tr><td class="none" colspan="5">Aucun <small>none</small></td></tr>';
    }
    q.recent_abandoned.forEach(function (a, i) {
      html += '<tr data-k="' + esc(n + "/abandoned/" + i) + '"><td></td><td>' + esc(localTime(a.at)) +
        "</td><td>" + esc(duration(a.wait_seconds)) + "</td><td>" + esc(a.caller) + "</td><td>" +
        esc(a.phase) + "</td></tr>";
    });
    html += "</tbody></table></div></section>";
    return html;
  }

  function render(snap) {
    board.innerHTML = snap.queues.map(renderQueue).join("");
    board.setAttribute("data-seq", String(snap.seq));
    board.setAttribute("data-at", snap.at);
    var t = document.querySelector('[data-k="trunk/in_use"]');
    var c = document.querySelector('[data-k="trunk/capacity"]');
    t.textContent = String(snap.trunk.in_use);
    c.textContent = String(snap.trunk.capacity);
    t.className = "fig" + (snap.trunk.capacity > 0 && snap.trunk.in_use >= 0.9 * snap.trunk.capacity ? " bad" : "");
    updated.textContent = localTime(snap.at);
  }

  function setLink(up) {
    link.className = "link " + (up ? "up" : "down");
    link.setAttribute("data-state", up ? "up" : "down");
    link.innerHTML = up ? "en direct <small>live</small>" : "déconnecté <small>disconnected</small>";
  }

  function tick() {
    var d = new Date();
    clock.textContent = two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }
  tick();
  setInterval(tick, 1000);

  // EventSource reconnects by itself after an error (the server's retry or 3 s).
  // `/wallboard?snapshots=N` asks for a bounded stream (headless browsers, scripts): the
  // page then stops after N snapshots instead of reconnecting.
  var limit = /[?&]snapshots=(\d+)/.exec(window.location.search);
  var source = new EventSource("/api/v1/wallboard/stream" + (limit ? "?snapshots=" + limit[1] : ""));
  var received = 0;
  source.addEventListener("open", function () { setLink(true); });
  source.addEventListener("error", function () {
    if (limit && received >= +limit[1]) {
      source.close();
      return;
    }
    setLink(false);
  });
  source.addEventListener("snapshot", function (e) {
    received += 1;
    setLink(true);
    try {
      render(JSON.parse(e.data));
    } catch (err) {
      board.setAttribute("data-error", String(err));
    }
    if (limit && received >= +limit[1]) {
      source.close();
    }
  });
})();
