// The log tail: the runtime's recent lines, filtered by application and level on
// the server and by request id here; newest first.
import { lines } from "./api.js";
import { fill, h } from "./dom.js";

const SHOWN = 200;

export class Logs {
  constructor(form, tbody) {
    this.form = form;
    this.tbody = tbody;
    this.paused = false;
    this.appSelect = form.querySelector("#log-app");
    this.request = form.querySelector("#log-request");
    const pause = form.querySelector("#log-pause");
    pause.addEventListener("click", () => {
      this.paused = !this.paused;
      pause.setAttribute("aria-pressed", String(this.paused));
      pause.textContent = this.paused ? "Resume" : "Pause";
    });
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("input", () => this.refresh(true));
  }

  setApps(ids) {
    const wanted = ["", "watt", ...ids];
    const have = [...this.appSelect.options].map((o) => o.value);
    if (wanted.join() === have.join()) return;
    const value = this.appSelect.value;
    fill(this.appSelect, wanted.map((id) => h("option", { value: id }, id || "all")));
    this.appSelect.value = wanted.includes(value) ? value : "";
  }

  async refresh(force = false) {
    if (this.paused && !force) return;
    const data = new FormData(this.form);
    const query = new URLSearchParams({ lines: "2000" });
    if (data.get("app")) query.set("app", data.get("app"));
    if (data.get("level")) query.set("level", data.get("level"));
    const wanted = String(data.get("request") || "").trim();
    let records = await lines(`/logs?${query}`);
    if (wanted) records = records.filter((r) => String(r.reqId || "").includes(wanted));
    records = records.slice(-SHOWN).reverse();
    fill(this.tbody, records.length ? records.map((r) => this.row(r))
      : h("tr", null, h("td", { colspan: 5 }, wanted ? `No line of request ${wanted}.` : "No line yet.")));
  }

  row(r) {
    const time = typeof r.time === "number" ? new Date(r.time).toLocaleTimeString() : "";
    const worker = r.worker === undefined ? r.app : `${r.app}#${r.worker}`;
    const req = r.reqId ? h("button", { type: "button", class: "linkish",
      title: "Show only this request's lines", onclick: () => {
        this.request.value = r.reqId;
        this.refresh(true);
      } }, r.reqId) : "";
    return h("tr", { "data-req": r.reqId || null },
      h("td", null, time), h("td", { class: `lvl-${r.level}` }, r.level || ""),
      h("td", null, worker || ""), h("td", null, req), h("td", null, r.msg ?? ""));
  }
}
