// neocloud console: paints the topology heatmap and draws the charts.
(function () {
  "use strict";

  function paintHeatmap(root) {
    var el = root.querySelector ? root.querySelector("#heatmap") : null;
    if (!el) return;
    var palette = {};
    try { palette = JSON.parse(el.dataset.palette || "{}"); } catch (e) {}
    el.querySelectorAll("canvas.cells").forEach(function (cv) {
      var cells = cv.dataset.cells || "";
      var size = cells.length > 2000 ? 4 : cells.length > 300 ? 6 : 10, gap = 1;
      var width = cv.clientWidth || 200;
      var cols = Math.max(1, Math.floor(width / (size + gap)));
      var rows = Math.ceil(cells.length / cols);
      var dpr = window.devicePixelRatio || 1;
      cv.width = width * dpr; cv.height = rows * (size + gap) * dpr;
      cv.style.height = rows * (size + gap) + "px";
      var g = cv.getContext("2d");
      g.scale(dpr, dpr);
      for (var i = 0; i < cells.length; i++) {
        g.fillStyle = palette[cells[i]] || "#999";
        g.fillRect((i % cols) * (size + gap), Math.floor(i / cols) * (size + gap), size, size);
      }
    });
    el.querySelectorAll("a.node").forEach(function (a) {
      var i = a.querySelector("i");
      if (i) i.style.background = palette[a.dataset.code] || "#999";
    });
  }

  var charts = {};
  var series = {
    "util-chart": [
      ["lease", "#1f3b73"], ["reserved", "#2f6fd0"], ["on_demand", "#2aa3a3"], ["spot", "#7cc46b"], ["internal", "#9a7fd1"], ["down", "#d7263d"]
    ],
    "node-chart": [["power_w", "#2f6fd0"], ["power_max_w", "#9ab8e8"], ["temp_max_c", "#d7263d", "°C"]],
    "billing-chart": [
      ["lease", "#1f3b73"], ["reserved", "#2f6fd0"], ["on_demand", "#2aa3a3"], ["spot", "#7cc46b"], ["internal", "#9a7fd1"], ["energy_kwh", "#e07b00", "kWh"]
    ],
    "power-chart": [
      ["it_kw", "#2f6fd0"], ["facility_kw", "#1f3b73"], ["grid_kw", "#2aa3a3"], ["generation_kw", "#e07b00"], ["unserved_kw", "#d7263d"]
    ],
    "finance-util-chart": [
      ["down", "#d7263d"], ["maintenance", "#e07b00"], ["lease", "#1f3b73"], ["reserved", "#2f6fd0"], ["on_demand", "#2aa3a3"], ["spot", "#7cc46b"],
      ["internal", "#9a7fd1"], ["spare", "#bbbbbb"], ["idle", "#eeeeee"]
    ],
    "finance-revenue-chart": [["recognized", "#1f3b73"], ["invoiced", "#2aa3a3"], ["deferred", "#9a7fd1"], ["unbilled", "#e07b00"]],
    "my-usage-chart": [["gpu_hours", "#2f6fd0"], ["energy_kwh", "#e07b00", "kWh"]]
  };
  var units = { "my-usage-chart": "GPU-hours", "node-chart": "W", "billing-chart": "GPU-hours", "power-chart": "kW", "finance-util-chart": "GPUs", "finance-revenue-chart": "USD" };

  function drawChart(el) {
    if (!window.uPlot || !el.dataset.src) return;
    fetch(el.dataset.src, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (d) {
      var spec = series[el.id] || [];
      var data = [d.t || []];
      var s = [{}];
      var axes = [{}, { label: units[el.id] || "GPUs", size: 70 }];
      var scales = { x: { time: true } };
      spec.forEach(function (x) {
        data.push(d[x[0]] || []);
        var o = { label: x[0].replace(/_/g, " "), stroke: x[1], width: 2 };
        if (el.id === "util-chart" || el.id === "finance-util-chart") { o.fill = x[1] + "22"; }
        if (x[2]) { o.scale = x[2]; }
        s.push(o);
      });
      if (el.id === "node-chart") {
        axes.push({ scale: "°C", side: 1, label: "°C", grid: { show: false } });
        scales["°C"] = { auto: true };
      }
      if (el.id === "billing-chart" || el.id === "my-usage-chart") {
        axes.push({ scale: "kWh", side: 1, label: "kWh", size: 70, grid: { show: false } });
        scales["kWh"] = { auto: true };
      }
      var width = el.clientWidth - 10;
      if (charts[el.id] && document.body.contains(charts[el.id].root)) {
        charts[el.id].setData(data);
        el.dataset.drawn = String(data[0].length);
        return;
      }
      el.innerHTML = "";
      charts[el.id] = new uPlot({ width: width, height: 260, series: s, axes: axes, scales: scales }, data, el);
      el.dataset.drawn = String(data[0].length);
    }).catch(function () {});
  }

  // The node page's live GPU chart: the browser keeps each report it sees.
  var gpuPoints = { src: "", t: [], series: [] };
  var gpuColors = ["#1f3b73", "#2f6fd0", "#2aa3a3", "#7cc46b", "#9a7fd1", "#e377c2", "#bcbd22", "#ff7f0e"];
  function drawGPUs() {
    var el = document.querySelector("#gpu-chart[data-gpus]");
    if (!el || !window.uPlot) return;
    var src = el.dataset.gpus;
    if (gpuPoints.src !== src) { gpuPoints = { src: src, t: [], series: [], seq: 0 }; }
    fetch(src, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (d) {
      if (!d.seq || d.seq === gpuPoints.seq || !d.power_w || d.power_w.length === 0) return;
      gpuPoints.seq = d.seq;
      gpuPoints.t.push(d.at);
      d.power_w.forEach(function (w, i) {
        if (!gpuPoints.series[i]) gpuPoints.series[i] = gpuPoints.t.slice(0, -1).map(function () { return null; });
        gpuPoints.series[i].push(w);
      });
      if (gpuPoints.t.length > 360) { gpuPoints.t.shift(); gpuPoints.series.forEach(function (s) { s.shift(); }); }
      var data = [gpuPoints.t].concat(gpuPoints.series);
      var ch = charts["gpu-chart"];
      if (ch && document.body.contains(ch.root) && ch.series.length === data.length) {
        ch.setData(data);
      } else {
        if (ch) { ch.destroy(); }
        var s = [{}];
        gpuPoints.series.forEach(function (_, i) { s.push({ label: "GPU " + i, stroke: gpuColors[i % gpuColors.length], width: 1.5 }); });
        el.innerHTML = "";
        charts["gpu-chart"] = new uPlot({ width: el.clientWidth - 10, height: 240, series: s, axes: [{}, { label: "W", size: 60 }], scales: { x: { time: true } } }, data, el);
      }
      el.dataset.drawn = String(gpuPoints.t.length);
    }).catch(function () {});
  }

  function drawAll() {
    document.querySelectorAll(".chart[data-src]").forEach(drawChart);
    drawGPUs();
  }

  document.addEventListener("DOMContentLoaded", function () {
    paintHeatmap(document);
    drawAll();
    setInterval(drawAll, 5000);
    setInterval(drawGPUs, 1000);
  });
  document.addEventListener("htmx:afterSettle", function () { paintHeatmap(document); });
})();
