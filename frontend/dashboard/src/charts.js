// Live charts per application: one uPlot chart per measure, one series per worker.
// /stats gives counters; rates are differences between two polls.
import uPlot from "uplot";
import { bytes, fill, fmt, h, ms } from "./dom.js";

const KEEP = 120; // points: two minutes at one per second
const COLOURS = ["#0b5cad", "#b3261e", "#116329", "#6f42c1", "#8a4b00", "#1b7c83"];
const MEASURES = [
  { key: "rate", title: "Requests/s", unit: "req/s", show: (v) => fmt(v, 1) },
  { key: "latency", title: "Latency p50 / p95 / p99", unit: "ms", show: (v) => fmt(v, 1) },
  { key: "elu", title: "Event-loop utilization", unit: "%", show: (v) => fmt(v, 0) },
  { key: "cpu", title: "CPU", unit: "% of a core", show: (v) => fmt(v, 0) },
  { key: "memory", title: "Memory", unit: "MB", show: (v) => fmt(v, 1) },
];

export class Charts {
  constructor(container) {
    this.container = container;
    this.apps = new Map(); // app id -> {times, series: Map(label -> values), charts}
    this.previous = null;
    this.observer = new ResizeObserver(() => this.resize());
  }

  // One /stats answer: derive each worker's rates against the previous poll.
  add(stats) {
    const before = new Map((this.previous?.workers || []).map((w) => [`${w.app}#${w.worker}`, w]));
    const dt = this.previous ? stats.time - this.previous.time : 0;
    const rows = new Map();
    for (const w of stats.workers) {
      const old = before.get(`${w.app}#${w.worker}`);
      const rate = old && dt > 0 ? Math.max(0, w.requests - old.requests) / dt : 0;
      const cpu = old && dt > 0 && w.cpu !== null && old.cpu !== null
        ? Math.max(0, (w.cpu - old.cpu) / dt) * 100 : null;
      const memory = w.memory ?? stats.process.memory; // a subinterpreter shares the runtime's
      if (!rows.has(w.app)) rows.set(w.app, []);
      rows.get(w.app).push({ worker: w.worker, rate, cpu, memory, shared: w.memory === null,
        elu: w.elu === null ? null : w.elu * 100, p50: w.p50, p95: w.p95, p99: w.p99 });
    }
    this.previous = stats;
    for (const [app, workers] of rows) this.addApp(app, stats.time, workers);
  }

  addApp(app, time, workers) {
    let entry = this.apps.get(app);
    if (!entry) {
      entry = { times: [], values: new Map(), charts: new Map(), captions: new Map() };
      this.apps.set(app, entry);
      this.build(app, entry, workers);
    }
    entry.times.push(time);
    const point = (label, value) => {
      if (!entry.values.has(label)) entry.values.set(label, Array(entry.times.length - 1).fill(null));
      entry.values.get(label).push(value);
    };
    for (const w of workers) {
      const ms1000 = (s) => (s === null || s === undefined ? null : s * 1000);
      point(`rate#${w.worker}`, w.rate);
      point(`latency#${w.worker}#p50`, ms1000(w.p50));
      point(`latency#${w.worker}#p95`, ms1000(w.p95));
      point(`latency#${w.worker}#p99`, ms1000(w.p99));
      point(`elu#${w.worker}`, w.elu);
      point(`cpu#${w.worker}`, w.cpu);
      point(`memory#${w.worker}`, w.memory === null ? null : w.memory / 1048576);
    }
    if (entry.times.length > KEEP) {
      entry.times.shift();
      for (const values of entry.values.values()) values.shift();
    }
    for (const values of entry.values.values()) {
      while (values.length < entry.times.length) values.push(null);
    }
    this.update(app, entry, workers);
  }

  build(app, entry, workers) {
    const grid = h("div", { class: "chart-grid" });
    const card = h("section", { class: "app-charts", "data-app": app,
      "aria-label": `Charts of ${app}` }, h("h3", null, app), grid);
    this.container.append(card);
    for (const m of MEASURES) {
      const caption = h("figcaption", null);
      const plot = h("div", { "aria-hidden": "true" });
      grid.append(h("figure", { "data-measure": m.key }, caption, plot));
      entry.captions.set(m.key, caption);
      entry.charts.set(m.key, { plot, uplot: null, labels: [] });
    }
    this.observer.observe(card);
  }

  // (Re)build a chart when its set of series changed (a worker more or less).
  update(app, entry, workers) {
    for (const m of MEASURES) {
      const chart = entry.charts.get(m.key);
      const labels = [...entry.values.keys()].filter((k) => k.startsWith(`${m.key}#`)).sort();
      if (!chart.uplot || labels.join() !== chart.labels.join()) {
        chart.uplot?.destroy();
        chart.labels = labels;
        chart.uplot = new uPlot(options(m, labels, chart.plot.clientWidth || 320),
          [entry.times, ...labels.map((l) => entry.values.get(l))], chart.plot);
      } else {
        chart.uplot.setData([entry.times, ...labels.map((l) => entry.values.get(l))]);
      }
      const latest = workers.map((w) => describe(m, w)).join("; ");
      fill(entry.captions.get(m.key), h("strong", null, m.title), ` (${m.unit}): `,
        h("span", { "data-latest": m.key }, latest));
    }
  }

  resize() {
    for (const entry of this.apps.values()) {
      for (const chart of entry.charts.values()) {
        if (chart.uplot && chart.plot.clientWidth) {
          chart.uplot.setSize({ width: chart.plot.clientWidth, height: 150 });
        }
      }
    }
  }
}

function describe(m, w) {
  const who = `worker ${w.worker}`;
  if (m.key === "latency") return `${who} ${ms(w.p50)} / ${ms(w.p95)} / ${ms(w.p99)}`;
  if (m.key === "memory") return `${who} ${bytes(w.memory)}${w.shared ? " (runtime process, shared)" : ""}`;
  return `${who} ${m.show(w[m.key])}`;
}

function options(m, labels, width) {
  return {
    width, height: 150,
    legend: { show: labels.length > 1, live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, m.key === "elu" ? 100 : 1)] } },
    axes: [{ stroke: "#4a5560", size: 30 }, { stroke: "#4a5560", size: 44 }],
    series: [{}, ...labels.map((label, i) => ({
      label: `w${label.slice(m.key.length + 1).replace("#", " ")}`,
      stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false,
    }))],
  };
}
