// Watt admin: polls the management API and renders one view at a time (#hash).
import { api } from "./api.js";
import { renderApps } from "./apps.js";
import { Charts } from "./charts.js";
import { fmt } from "./dom.js";
import { Logs } from "./logs.js";
import { Mesh } from "./mesh.js";
import { renderTraces } from "./traces.js";

const VIEWS = ["applications", "charts", "mesh", "logs", "traces"];
const $ = (selector) => document.querySelector(selector);

const status = $("#status");
function notify(message, error = false) {
  status.textContent = message;
  status.classList.toggle("error", error);
}

const charts = new Charts($("#charts-list"));
const mesh = new Mesh($("#mesh-graph"), $("#mesh-table tbody"));
const logs = new Logs($("#log-filters"), $("#log-table tbody"));
let appIds = [];
let view = "applications";

function show() {
  const wanted = location.hash.slice(1);
  view = VIEWS.includes(wanted) ? wanted : "applications";
  for (const name of VIEWS) $(`#view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${view}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `Watt admin — ${view}`;
  refreshView();
}

async function refreshApps() {
  const apps = await api("GET", "/applications");
  appIds = apps.map((a) => a.id);
  renderApps($("#apps-table tbody"), apps, notify, refreshApps);
  logs.setApps(appIds);
}

async function refreshMeta() {
  const meta = await api("GET", "/metadata");
  $("#runtime").textContent = `pid ${meta.pid} · ${meta.state} · entrypoint ${meta.entrypoint} at ${meta.url} · up ${fmt(meta.uptime / 60, 1)} min · Watt ${meta.wattVersion}`;
}

async function refreshView() {
  try {
    if (view === "mesh") mesh.render(appIds);
    else if (view === "logs") await logs.refresh();
    else if (view === "traces") await renderTraces($("#traces-list"));
    if (status.classList.contains("error") && status.dataset.source === "poll") notify("");
  } catch (error) {
    pollFailed(error);
  }
}

function pollFailed(error) {
  notify(error.status === 401 ? "The dashboard's token was refused: run watt admin again."
    : `The runtime does not answer: ${error.message}`, true);
  status.dataset.source = "poll";
}

// Every second: the counters (charts, mesh) and the current view; the rest slower.
let tick = 0;
async function poll() {
  try {
    const stats = await api("GET", "/stats");
    charts.add(stats);
    mesh.add(stats);
    if (tick % 2 === 0) await refreshApps();
    if (tick % 5 === 0) await refreshMeta();
    await refreshView();
  } catch (error) {
    pollFailed(error);
  }
  tick += 1;
  setTimeout(poll, 1000);
}

window.addEventListener("hashchange", () => {
  show();
  window.scrollTo(0, 0);
  $("#main").focus({ preventScroll: true }); // keyboard and screen-reader users land on the view
});
show();
refreshApps().catch(pollFailed);
refreshMeta().catch(pollFailed);
poll();
