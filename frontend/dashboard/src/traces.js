// Recent traces as waterfalls: a row per span, indented by depth, its bar placed
// on the trace's own time line.
import { api } from "./api.js";
import { fill, fmt, h } from "./dom.js";

export async function renderTraces(container) {
  const answer = await api("GET", "/traces?limit=15");
  if (!answer.enabled) {
    fill(container, h("p", null, "Tracing is off: add ", h("code", null, '"dashboard": true'),
      " (docs/dashboard.md) or a ", h("code", null, "telemetry"),
      " section (docs/observability.md) to watt.json and restart to see traces here."));
    return;
  }
  if (!answer.traces.length) {
    fill(container, h("p", null, "No trace yet: send a request to the entrypoint."));
    return;
  }
  fill(container, answer.traces.map(waterfall));
}

function waterfall(trace) {
  const depth = new Map();
  const byId = new Map(trace.spans.map((s) => [s.spanId, s]));
  const depthOf = (span) => {
    if (depth.has(span.spanId)) return depth.get(span.spanId);
    const parent = span.parentSpanId && byId.get(span.parentSpanId);
    const d = parent && parent !== span ? depthOf(parent) + 1 : 0;
    depth.set(span.spanId, d);
    return d;
  };
  const total = trace.duration || 1;
  const root = trace.spans[0];
  return h("article", { class: "trace", "data-trace": trace.traceId },
    h("h3", null, `${root.name} — ${root.app} — ${fmt(trace.duration, 2)} ms`,
      h("span", { class: "hint" }, ` · ${new Date(trace.start).toLocaleTimeString()} · trace ${trace.traceId.slice(0, 12)}…`)),
    trace.spans.map((span) => {
      const left = ((span.start - trace.start) / total) * 100;
      const width = ((span.end - span.start) / total) * 100;
      const label = `${span.app}: ${span.name} (${span.kind.toLowerCase()}) ${fmt(span.end - span.start, 2)} ms`;
      const bar = h("div", { class: `span-bar ${span.kind}${span.error ? " error" : ""}` });
      // Through the CSSOM: the page's CSP refuses style attributes.
      bar.style.left = `${left.toFixed(2)}%`;
      bar.style.width = `${Math.max(width, 0.3).toFixed(2)}%`;
      return h("div", { class: "span-row" },
        h("div", { class: "span-label", title: label }, "\u00a0\u00a0".repeat(depthOf(span)), label),
        h("div", { class: "span-track", "aria-hidden": "true" }, bar));
    }));
}
