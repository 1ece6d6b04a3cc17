// The mesh as a graph: applications on a circle, an arrow per caller -> target
// with its calls/s and error ratio; the table below says the same in text.
import { fill, fmt, h, ms } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WINDOW = 10; // seconds the rates are computed over

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export class Mesh {
  constructor(graph, tbody) {
    this.graph = graph;
    this.tbody = tbody;
    this.history = []; // [{time, edges: Map(key -> edge)}]
  }

  add(stats) {
    this.history.push({ time: stats.time, edges: new Map(stats.mesh.map((e) => [`${e.source}>${e.target}`, e])) });
    while (this.history.length > 1 && stats.time - this.history[0].time > WINDOW) this.history.shift();
  }

  // Rates over the window: the newest counters minus the oldest kept.
  edges() {
    const first = this.history[0];
    const last = this.history[this.history.length - 1];
    if (!last) return [];
    const dt = last.time - first.time;
    return [...last.edges.entries()].map(([key, e]) => {
      const old = first.edges.get(key) || { requests: 0, errors: 0 };
      const calls = e.requests - old.requests;
      const errors = e.errors - old.errors;
      return { ...e, rate: dt > 0 ? calls / dt : 0,
        errorRatio: calls > 0 ? errors / calls : (e.requests ? e.errors / e.requests : 0) };
    });
  }

  render(appIds) {
    const edges = this.edges();
    const ids = [...new Set([...appIds, ...edges.flatMap((e) => [e.source, e.target])])];
    const size = 420;
    const centre = size / 2;
    const radius = ids.length > 1 ? size / 2 - 60 : 0;
    const at = new Map(ids.map((id, i) => {
      const angle = (2 * Math.PI * i) / ids.length - Math.PI / 2;
      return [id, [centre + radius * Math.cos(angle), centre + radius * Math.sin(angle)]];
    }));
    const svg = s("svg", { viewBox: `0 0 ${size} ${size}`, role: "img",
      "aria-label": `Mesh graph: ${edges.length} caller-target pair(s) among ${ids.length} application(s); the table below lists them` });
    svg.append(s("defs", null, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#57606a" }))));
    for (const e of edges) {
      const [x1, y1] = at.get(e.source);
      const [x2, y2] = at.get(e.target);
      const len = Math.hypot(x2 - x1, y2 - y1) || 1;
      const [ux, uy] = [(x2 - x1) / len, (y2 - y1) / len];
      const r = 34; // node radius: the arrow starts and ends on the circles
      svg.append(s("g", { class: `edge${e.errorRatio > 0 ? " errors" : ""}` },
        s("line", { x1: x1 + ux * r, y1: y1 + uy * r, x2: x2 - ux * r, y2: y2 - uy * r,
          "marker-end": "url(#arrow)" }),
        s("text", { x: (x1 + x2) / 2 - uy * 12, y: (y1 + y2) / 2 + ux * 12 },
          `${fmt(e.rate, 1)}/s · ${fmt(e.errorRatio * 100, 0)}% err`)));
    }
    for (const id of ids) {
      const [x, y] = at.get(id);
      svg.append(s("g", { class: "node" }, s("circle", { cx: x, cy: y, r: 34 }),
        s("text", { x, y: y + 4 }, id.length > 12 ? `${id.slice(0, 11)}…` : id)));
    }
    fill(this.graph, svg);
    fill(this.tbody, edges.length ? edges.map((e) => h("tr", null,
      h("td", null, e.source), h("td", null, e.target), h("td", { class: "num" }, fmt(e.rate, 1)),
      h("td", { class: "num" }, `${fmt(e.errorRatio * 100, 0)}%`),
      h("td", { class: "num" }, e.requests),
      h("td", { class: "num" }, ms(e.requests ? e.durationSum / e.requests : null))))
      : h("tr", null, h("td", { colspan: 6 }, "No mesh call yet.")));
  }
}
