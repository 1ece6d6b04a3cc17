// The applications view: kind, isolation, workers, status, restarts; restart and
// log-level actions.
import { api } from "./api.js";
import { fill, h } from "./dom.js";

const LEVELS = ["trace", "debug", "info", "warning", "error", "silent"];

// A worker's identity: its process id, or its subinterpreter's id; a restart
// changes it.
export function workerId(w) {
  return w.kind === "process" ? `pid ${w.pid}` : `interpreter ${w.interpreter}`;
}

// Rows are rebuilt only when something changed, and the control that had the
// focus gets it back: a poll never pulls the keyboard away from a user.
let shown = "";

export function renderApps(tbody, apps, notify, refresh) {
  const signature = JSON.stringify(apps);
  if (signature === shown) return;
  shown = signature;
  const focused = document.activeElement?.closest?.("tr[data-app]") && document.activeElement;
  const again = focused && [focused.closest("tr").dataset.app, focused.dataset.action];
  fill(tbody, apps.map((app) => {
    const restart = h("button", { type: "button", "data-action": "restart",
      "aria-label": `Restart ${app.id}` }, "Restart");
    restart.addEventListener("click", async () => {
      restart.disabled = true;
      notify(`Restarting ${app.id}…`);
      try {
        await api("POST", `/applications/${encodeURIComponent(app.id)}/restart`);
        notify(`${app.id} restarted`);
        await refresh();
      } catch (error) {
        notify(`Restart of ${app.id} failed: ${error.message}`, true);
      } finally {
        restart.disabled = false;
      }
    });
    const level = h("select", { "aria-label": `Log level of ${app.id}`, "data-action": "level" },
      h("option", { value: "" }, "change…"), LEVELS.map((l) => h("option", { value: l }, l)));
    level.addEventListener("change", async () => {
      if (!level.value) return;
      try {
        const answer = await api("PUT", `/applications/${encodeURIComponent(app.id)}/log-level`,
          { level: level.value });
        notify(`${app.id} now logs from ${answer.level} on (${answer.workers} worker(s) told)`);
      } catch (error) {
        notify(`Log level of ${app.id}: ${error.message}`, true);
      }
    });
    return h("tr", { "data-app": app.id },
      h("th", { scope: "row" }, app.id, app.entrypoint ? h("div", { class: "hint" }, "entrypoint") : null),
      h("td", null, app.kind),
      h("td", null, app.isolation),
      h("td", null, h("ul", { class: "workers" }, app.workers.map((w) =>
        h("li", { "data-worker": w.worker }, `#${w.worker} · `,
          h("span", { class: "worker-id" }, workerId(w)), ` · ${w.status}`)))),
      h("td", null, h("span", { class: `badge ${app.status}` }, app.status)),
      h("td", { class: "num" }, app.restarts),
      h("td", null, level),
      h("td", null, restart));
  }));
  if (again) {
    tbody.querySelector(`tr[data-app="${CSS.escape(again[0])}"] [data-action="${again[1]}"]`)?.focus();
  }
}
