// The page's only way to the server: fetch() to the public API, with the API key (if any) as a
// bearer token. The key lives in this tab's sessionStorage and nowhere else.

const KEY_STORAGE = "gan-serve.api-key";

export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null; // storage disabled: the user is asked again on reload
  }
}

export function storeKey(key) {
  try {
    sessionStorage.setItem(KEY_STORAGE, key);
  } catch {
    /* storage disabled */
  }
}

export function forgetKey() {
  try {
    sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled */
  }
}

/** A failed API call: `status` 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(describe(status, detail, retryAfter));
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }

  /** For 422: [{field: "n" | "interpolate.steps" | "files.0" | "", msg}], else []. */
  fieldErrors() {
    if (!Array.isArray(this.detail)) return [];
    return this.detail.map((item) => ({
      field: (Array.isArray(item?.loc) ? item.loc : [])
        .filter((part, i) => !(i === 0 && (part === "body" || part === "query")))
        .join("."),
      msg: String(item?.msg ?? item),
    }));
  }
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => String(d?.msg ?? d)).join("; ");
  return detail == null ? "" : JSON.stringify(detail);
}

function describe(status, detail, retryAfter) {
  const text = detailText(detail);
  switch (status) {
    case 0:
      return "Cannot reach the server: is gan-serve still running?";
    case 401:
      return "The server needs an API key (or did not accept the one given).";
    case 413:
      return `Too much data: ${text}`;
    case 503:
    case 504:
      return `The server is busy: ${text}${retryAfter ? ` (try again in ${retryAfter} s)` : ""}`;
    default:
      return text || `The server answered ${status}.`;
  }
}

// The served model the page talks to (GET /models); null: the server's default.
let model = null;

export function setModel(name) {
  model = name;
}

export function currentModel() {
  return model;
}

/**
 * Call the API. `json` is sent as a JSON body, `body` (e.g. FormData) as is. With a model
 * picked, a JSON body names it as `model` (POST /generate), every other request as `?model=`.
 * Resolves to the Response when it is 2xx, rejects with ApiError otherwise.
 */
export async function request(path, { method = "GET", json, body } = {}) {
  const headers = new Headers();
  const key = storedKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const init = { method, headers, cache: "no-store" };
  if (model !== null && path !== "/models") {
    if (json !== undefined) json = { ...json, model };
    else path += `${path.includes("?") ? "&" : "?"}model=${encodeURIComponent(model)}`;
  }
  if (json !== undefined) {
    headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, null);
  }
  if (response.ok) return response;
  let detail = response.statusText;
  try {
    const data = await response.json();
    if (data && "detail" in data) detail = data.detail;
  } catch {
    /* not JSON: keep the status text */
  }
  throw new ApiError(response.status, detail, response.headers.get("Retry-After"));
}

export async function getJSON(path) {
  return (await request(path)).json();
}

export async function postJSON(path, json) {
  return (await request(path, { method: "POST", json })).json();
}
