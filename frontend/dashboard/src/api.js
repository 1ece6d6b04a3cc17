// The management API, through the dashboard's listener.  The HttpOnly cookie set
// from the URL's token authenticates; changes also carry X-Watt-Dashboard.
const PREFIX = "/api/v1";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") init.headers["x-watt-dashboard"] = "1";
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const reply = await fetch(PREFIX + path, init);
  const type = reply.headers.get("content-type") || "";
  if (!reply.ok) {
    let error = { code: "WATT_ERROR", message: `HTTP ${reply.status}` };
    if (type.startsWith("application/json")) error = await reply.json();
    throw new ApiError(reply.status, error.code, error.message);
  }
  if (type.startsWith("application/json")) return reply.json();
  return reply.text();
}

// NDJSON (GET /logs) as a list of objects.
export async function lines(path) {
  const text = await api("GET", path);
  return text.split("\n").filter((l) => l.trim()).map((l) => {
    try { return JSON.parse(l); } catch { return { msg: l }; }
  });
}
