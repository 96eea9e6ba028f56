// The clearance floor's page: renders a summary (GET /api/summary's JSON) into the tiles,
// tables and charts. Live: one summary per second from /events (server-sent events).
// Report: the summary inlined in <script id="summary-data" type="application/json">.
// Every text from the data goes in through textContent (never innerHTML), and the charts
// render their labels on the canvas (tooltips in rich text, not HTML).
(function () {
  "use strict";
  var STATUSES = ["RELEASED", "INSPECTION", "REVIEW", "REJECTED"];
  var NAMES = { RELEASED: "released", INSPECTION: "X-ray", REVIEW: "review", REJECTED: "rejected" };
  var COLORS = { RELEASED: "#3fb950", INSPECTION: "#58a6ff", REVIEW: "#d29922", REJECTED: "#f85149" };
  var charts = {};

  function num(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  function money(text) {
    var parts = String(text).split(".");
    return Number(parts[0]).toLocaleString("en-US") + "." + (parts[1] || "00");
  }
  function secs(s) {
    if (s === null || s === undefined) return "–";
    if (s < 10) return s.toFixed(2) + " s";
    if (s < 120) return s.toFixed(1) + " s";
    return (s / 60).toFixed(1) + " min";
  }
  function set(name, text) {
    var nodes = document.querySelectorAll('[data-figure="' + name + '"]');
    for (var i = 0; i < nodes.length; i++) nodes[i].textContent = text;
  }
  function fill(id, rows) {
    var body = document.querySelector("#" + id + " tbody");
    var fresh = document.createElement("tbody");
    rows.forEach(function (cells) {
      var tr = document.createElement("tr");
      cells.forEach(function (cell) {
        var td = document.createElement("td");
        td.textContent = String(cell);
        tr.appendChild(td);
      });
      fresh.appendChild(tr);
    });
    body.parentNode.replaceChild(fresh, body);
  }
  function chart(id) {
    if (!charts[id] && window.echarts) charts[id] = window.echarts.init(document.getElementById(id), "dark");
    return charts[id];
  }
  var tooltip = { trigger: "axis", renderMode: "richText" };

  function render(s) {
    var d = s.decided;
    set("since", s.since ? s.since.replace("T", " ") : "the beginning of the topics");
    if (s.now) document.getElementById("window-label").textContent = s.daily ? "Today" : "Window";
    set("now", s.now ? s.now.replace("T", " ") : "finished run");
    set("released", num(d.RELEASED));
    set("inspection", num(d.INSPECTION));
    set("review", num(d.REVIEW));
    set("rejected", num(d.REJECTED));
    set("total", num(d.total));
    set("value-cleared", money(s.valueCleared));
    set("tax-assessed", money(s.taxAssessed));
    var r = s.receipt;
    set("within-ten", r.share === null ? "–" : (100 * r.share).toFixed(1) + " %");
    set("measured", r.measured ? num(r.withinTenMinutes) + " of " + num(r.measured) + " with receivedAt"
                               : "no receivedAt on these declarations");
    set("latency", r.measured ? secs(r.p50) + " / " + secs(r.p95) + " / " + secs(r.p99) : "–");
    set("throughput", num(s.throughput));
    set("dead-letters", "(" + num(s.deadLetters.total) + ")");
    set("unreadable", num(s.unreadable));
    set("repeats", num(s.repeats));
    fill("table-reasons", s.reasons.map(function (x) { return [x[0], num(x[1])]; }));
    fill("table-dead", s.deadLetters.byReason.map(function (x) { return [x[0], num(x[1])]; }));
    var row = function (p) { return [p.code, num(p.decided), num(p.cleared), num(p.flagged), money(p.value)]; };
    fill("table-platforms", s.platforms.map(row));
    fill("table-logistics", s.logistics.map(row));
    var reader = s.reader || {};
    var notes = [];
    Object.keys(reader.denied || {}).forEach(function (t) { notes.push(t + ": " + reader.denied[t]); });
    if (reader.error) notes.push(reader.error);
    set("reader-note", notes.length ? " · " + notes.join("; ") : "");
    set("dead-note", Object.keys(reader.denied || {}).length ? notes.join("; ") : "");
    minutes(s);
    if (s.workers) workers(s.workers);
    document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates")) + 1));
  }

  function minutes(s) {
    var c = chart("chart-minutes");
    if (!c) return;
    var pm = s.perMinute;
    c.setOption({
      backgroundColor: "transparent", animation: false, tooltip: tooltip,
      legend: { top: 0, data: STATUSES.map(function (k) { return NAMES[k]; }) },
      grid: { left: 50, right: 10, top: 30, bottom: 25 },
      xAxis: { type: "category", data: pm.minutes },
      yAxis: { type: "value" },
      series: STATUSES.map(function (k) {
        return { name: NAMES[k], type: "bar", stack: "all", barMaxWidth: 48, data: pm[k], itemStyle: { color: COLORS[k] } };
      })
    });
  }

  function workers(w) {
    set("group", w.group);
    set("members", num(w.members));
    set("total-lag", num(w.totalLag));
    set("group-error", w.error ? "group: " + w.error : "");
    document.getElementById("lag-warning").hidden = !w.growing;
    var c = chart("chart-lag");
    if (!c) return;
    // one bar per input partition, grouped by partition number, one series per topic
    var topics = [], parts = [], lag = {};
    w.partitions.forEach(function (p) {
      if (topics.indexOf(p.topic) < 0) topics.push(p.topic);
      if (parts.indexOf(p.partition) < 0) parts.push(p.partition);
      lag[p.topic + "\u0000" + p.partition] = p.lag;
    });
    parts.sort(function (a, b) { return a - b; });
    c.setOption({
      backgroundColor: "transparent", animation: false, tooltip: tooltip,
      legend: { top: 0, textStyle: { fontSize: 11 } },
      grid: { left: 50, right: 10, top: 28, bottom: 22 },
      xAxis: { type: "category", name: "partition", nameGap: 4, data: parts.map(String) },
      yAxis: { type: "value", minInterval: 1 },
      series: topics.map(function (t) {
        return { type: "bar", name: t.split(".")[1] || t,
                 data: parts.map(function (p) { var v = lag[t + "\u0000" + p]; return v === undefined ? 0 : v; }) };
      })
    }, true);
  }

  window.addEventListener("resize", function () { Object.keys(charts).forEach(function (k) { charts[k].resize(); }); });

  var inline = document.getElementById("summary-data");
  if (inline) {
    document.body.setAttribute("data-mode", "report");
    document.getElementById("connection").textContent = "report";
    document.getElementById("connection").setAttribute("data-state", "live");
    document.getElementById("window-label").textContent = "Report";
    document.getElementById("throughput-label").textContent = "Average rate, /s";
    document.getElementById("per-minute-title").textContent = "Declarations per minute of event time";
    render(JSON.parse(inline.textContent));
    return;
  }
  var status = document.getElementById("connection");
  var source = new EventSource("events");
  source.onopen = function () { status.textContent = "live"; status.setAttribute("data-state", "live"); };
  source.onerror = function () { status.textContent = "reconnecting"; status.setAttribute("data-state", "lost"); };
  source.onmessage = function (e) { render(JSON.parse(e.data)); };
})();
