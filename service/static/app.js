// The gan-serve page: generate, interpolate, score, project and the model card, on top of the
// public API.
// Everything the server says goes into the page as text (textContent), never as HTML. What the
// page offers comes from GET /info: fields it does not know are not shown, and fields that a
// later server may add (classes, generate.methods, kind, calibrated_probability) are picked up
// when present.

import {
  ApiError,
  currentModel,
  forgetKey,
  getJSON,
  postJSON,
  request,
  setModel,
  storeKey,
  storedKey,
} from "./api.js";

const $ = (id) => document.getElementById(id);

let info = null; // GET /info
let methods = []; // sampling methods advertised by /info (generate.methods), normalised
let selectedButton = null;
let selectedRecord = null;
let animation = { url: null, still: null, playing: false }; // the path's GIF (an object URL)
let scoreURLs = []; // object URLs of the shown uploads, revoked on the next score
// The shown projection (POST /project's answer), its upload's object URL and the walk's GIF
let projection = { data: null, name: "", uploadURL: null, walk: { url: null, still: null, playing: false } };
let started = false;

// ---------------------------------------------------------------------------------------------
// small helpers
// ---------------------------------------------------------------------------------------------

/** Make an element; strings among `children` become text nodes (never HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const isNumber = (x) => typeof x === "number" && Number.isFinite(x);

function fmt(x) {
  if (!isNumber(x)) return x == null ? "" : String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en");
  const a = Math.abs(x);
  return a >= 1000 ? Math.round(x).toLocaleString("en") : String(Number(x.toPrecision(3)));
}

function duration(seconds) {
  if (!isNumber(seconds)) return null;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 90 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function bytes(n) {
  if (!isNumber(n)) return null;
  if (n >= 1024 * 1024) return `${fmt(n / (1024 * 1024))} MiB`;
  if (n >= 1024) return `${fmt(n / 1024)} KiB`;
  return `${n} bytes`;
}

function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

function shellQuote(text) {
  return /^[A-Za-z0-9_./:@=-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/** JSON with a space after ':' and ',' at the top level, compact inside. */
function jsonText(body) {
  const parts = Object.entries(body).map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  return `{${parts.join(", ")}}`;
}

function base64ToBlob(b64, type = "image/png") {
  const raw = atob(b64);
  const buf = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) buf[i] = raw.charCodeAt(i);
  return new Blob([buf], { type });
}

/** Shown size of a generated image: integer scaling to about 84-128 px (pixelated in CSS). */
function pixelScale(size) {
  return Math.max(1, Math.round(96 / Math.max(1, size)));
}

// ---------------------------------------------------------------------------------------------
// errors next to the control that caused them
// ---------------------------------------------------------------------------------------------

/** A problem found before sending anything, reported like a 422 from the server. */
class LocalError extends Error {
  constructor(field, msg) {
    super(msg);
    this.field = field;
  }

  fieldErrors() {
    return [{ field: this.field, msg: this.message }];
  }
}

function clearErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/** The error slot for `field` ("interpolate.steps", "files.0"), else its parent's, else the form's. */
function errorSlot(form, field) {
  let name = field;
  for (;;) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (slot) return slot;
    if (name === "") return null;
    name = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "";
  }
}

function showError(form, error) {
  if (error instanceof ApiError && error.status === 401) {
    forgetKey();
    askForKey("The server did not accept the API key (it may have changed); enter it again.");
    return;
  }
  let items = typeof error.fieldErrors === "function" ? error.fieldErrors() : [];
  if (items.length === 0) items = [{ field: "", msg: error.message || String(error) }];
  for (const { field, msg } of items) {
    const slot = errorSlot(form, field);
    if (!slot) continue;
    slot.textContent = slot.textContent ? `${slot.textContent} ${msg}` : msg;
    const input = field ? slot.closest(".field")?.querySelector("input, select") : null;
    if (input) input.setAttribute("aria-invalid", "true");
  }
  if (!(error instanceof ApiError) && !(error instanceof LocalError)) console.error(error);
}

/** Run `task` with the form marked busy; its errors go next to their controls. */
async function busy(form, task) {
  const button = form.querySelector("button[type=submit]");
  clearErrors(form);
  form.setAttribute("aria-busy", "true");
  if (button) button.disabled = true;
  try {
    await task();
  } catch (error) {
    showError(form, error);
  } finally {
    form.removeAttribute("aria-busy");
    if (button) button.disabled = false;
  }
}

/** The number in an <input type=number>, or undefined when empty. */
function numberFrom(input, field) {
  if (input.validity.badInput) throw new LocalError(field, "Enter a number.");
  const text = input.value.trim();
  return text === "" ? undefined : Number(text);
}

// ---------------------------------------------------------------------------------------------
// API key
// ---------------------------------------------------------------------------------------------

function askForKey(message = "") {
  $("app").hidden = true;
  $("auth").hidden = false;
  $("model-line").textContent = "This server requires an API key.";
  const form = $("auth-form");
  clearErrors(form);
  form.querySelector('[data-error-for=""]').textContent = message;
  $("api-key").value = "";
  $("api-key").focus();
}

$("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) {
    clearErrors($("auth-form"));
    $("auth-form").querySelector('[data-error-for=""]').textContent = "Enter the API key.";
    return;
  }
  storeKey(key);
  start();
});

function keyRequired() {
  return Boolean(info?.auth?.api_key_required) || storedKey() !== null;
}

// ---------------------------------------------------------------------------------------------
// what /info offers: limits, classes (conditional models), sampling methods, kind
// ---------------------------------------------------------------------------------------------

function className(entry) {
  if (entry && typeof entry === "object") return String(entry.name ?? entry.label ?? entry.id ?? "");
  return String(entry);
}

function setupLabels() {
  const classes = Array.isArray(info.classes) ? info.classes : [];
  const options = () => classes.map((entry, i) => el("option", { value: String(i), text: className(entry) }));
  $("label-field").hidden = classes.length === 0;
  $("label").replaceChildren(el("option", { value: "", text: "Any class (random)" }), ...options());
  // The interpolation's ends: each seed's own class (seed mod K) unless one is picked.
  for (const id of ["from-label", "to-label"]) {
    $(`${id}-field`).hidden = classes.length === 0;
    $(id).replaceChildren(el("option", { value: "", text: "The seed's own class" }), ...options());
  }
}

/** generate.methods as [{name, description, options: [{name, type, ...}]}]; accepts a list of
 * names, a list of objects with `name`, or an object keyed by name. */
function normaliseMethods(raw) {
  let list = [];
  if (Array.isArray(raw)) list = raw;
  else if (raw && typeof raw === "object") list = Object.entries(raw).map(([name, v]) => ({ name, ...v }));
  return list
    .map((m) => (typeof m === "string" ? { name: m } : m))
    .filter((m) => m && typeof m.name === "string")
    .map((m) => {
      let options = m.options ?? {};
      if (!Array.isArray(options)) options = Object.entries(options).map(([name, v]) => ({ name, ...v }));
      return {
        name: m.name,
        label: String(m.label ?? m.name),
        description: m.description == null ? "" : String(m.description),
        options: options.filter((o) => o && typeof o.name === "string"),
        available: m.available !== false,
        unavailable: m.unavailable_reason == null ? "" : String(m.unavailable_reason),
      };
    });
}

/** What the model kind cannot do is not offered, as /info's `capabilities` declares it: no
 * scoring without D (/score answers 422), no interpolation without latents (an ebm's images are
 * Langevin searches). A server without `capabilities` gets the rule of its kinds: a vae or ae
 * has no D, an ebm no latents. */
function kindCapabilities() {
  const declared = info.capabilities;
  if (declared && typeof declared.score === "boolean" && typeof declared.interpolate === "boolean") {
    return { score: declared.score, interpolate: declared.interpolate };
  }
  const kind = info.kind ?? "gan";
  return { score: kind !== "vae" && kind !== "ae", interpolate: kind !== "ebm" };
}

function setupKind() {
  const can = kindCapabilities();
  $("score").hidden = !can.score;
  $("score-selected").hidden = !can.score;
  $("interpolate").hidden = !can.interpolate;
}

/** The header's link to each section that is shown, none to a hidden one. */
function setupNav() {
  for (const link of document.querySelectorAll('.top nav a[href^="#"]')) {
    const section = document.getElementById(link.getAttribute("href").slice(1));
    if (section) link.hidden = section.hidden;
  }
}

function canInterpolate() {
  return !$("interpolate").hidden;
}

function setupMethods() {
  methods = normaliseMethods(info.generate?.methods);
  const show = methods.length > 1 || methods.some((m) => m.options.length > 0);
  $("method-field").hidden = !show;
  $("method").replaceChildren(
    ...methods.map((m, i) =>
      el("option", {
        value: String(i),
        text: m.available ? m.label : `${m.label}: not on this checkpoint`,
        disabled: !m.available,
      }),
    ),
  );
  renderMethodOptions();
}

/** The selected method's description, then which methods this checkpoint cannot run and why. */
function methodHint(method) {
  const off = methods.filter((m) => !m.available);
  const reasons = [...new Set(off.map((m) => m.unavailable).filter(Boolean))];
  const note = off.length ? `Not on this checkpoint: ${off.map((m) => m.name).join(", ")}${reasons.length ? ` (${reasons.join("; ")})` : ""}.` : "";
  return [method?.description ?? "", note].filter(Boolean).join(" ");
}

function renderMethodOptions() {
  const method = methods[$("method").selectedIndex];
  $("method-hint").textContent = methodHint(method);
  const box = $("method-options");
  box.replaceChildren();
  for (const option of method?.options ?? []) {
    const id = `method-option-${option.name}`;
    const type = option.type === "boolean" ? "checkbox" : option.enum ? "select" : "number";
    let input;
    if (type === "select") {
      input = el("select", { id }, ...option.enum.map((v) => el("option", { value: String(v), text: String(v) })));
      if (option.default != null) input.value = String(option.default);
    } else {
      input = el("input", {
        id,
        type,
        min: option.minimum,
        max: option.maximum,
        step: option.type === "integer" ? 1 : "any",
      });
      if (type === "checkbox") input.checked = Boolean(option.default);
      else if (option.default != null) input.value = String(option.default);
    }
    input.dataset.option = option.name;
    input.dataset.kind = option.type ?? "";
    box.append(
      el(
        "div",
        { class: "field" },
        el("label", { for: id, text: option.label ?? option.name }),
        input,
        option.description ? el("p", { class: "hint", text: option.description }) : null,
        el("p", { class: "error", "data-error-for": `method_options.${option.name}` }),
      ),
    );
  }
}
$("method").addEventListener("change", renderMethodOptions);

/** The method fields of a /generate body: {method, method_options} (empty when not offered). */
function methodBody() {
  if ($("method-field").hidden) return {};
  const method = methods[$("method").selectedIndex];
  if (!method) return {};
  const body = { method: method.name };
  const options = {};
  for (const input of $("method-options").querySelectorAll("[data-option]")) {
    const name = input.dataset.option;
    if (input.type === "checkbox") options[name] = input.checked;
    else if (input.tagName === "SELECT") options[name] = input.value;
    else {
      const value = numberFrom(input, `method_options.${name}`);
      if (value !== undefined) options[name] = value;
    }
  }
  if (method.name === "plain" && Object.keys(options).length === 0) return {}; // the default
  if (Object.keys(options).length > 0) body.method_options = options;
  return body;
}

function setup() {
  const limits = info.limits ?? {};
  const maxImages = isNumber(limits.max_images) ? limits.max_images : 64;
  const [seedMin, seedMax] = Array.isArray(limits.seed_range) ? limits.seed_range : [0, 2 ** 53 - 1];
  const [tMin, tMax] = Array.isArray(limits.truncation_range) ? limits.truncation_range : [0.05, 10];

  for (const id of ["seed", "from-seed", "to-seed"]) {
    $(id).min = seedMin;
    $(id).max = seedMax;
  }
  $("n").max = maxImages;
  $("steps").max = maxImages;
  if (!$("n").value) $("n").value = String(Math.min(16, maxImages));
  if (Number($("steps").value) > maxImages) $("steps").value = String(maxImages);
  $("n-hint").textContent = `1 to ${maxImages} per request`;
  $("truncation").min = tMin;
  $("truncation").max = tMax;
  $("truncation-hint").textContent =
    `${tMin} to ${tMax}; latent values beyond it are redrawn. Smaller: more typical, less varied images.`;
  if (!$("seed").value) $("seed").value = String(randomSeed());

  setupLabels();
  setupMethods();
  setupKind();
  setupProject();

  const formats = info.preprocessing?.accepted_formats;
  $("score-hint").textContent = [
    Array.isArray(formats) ? formats.join(", ") : null,
    `up to ${maxImages} images at once`,
  ]
    .filter(Boolean)
    .join("; ");

  const m = info.model ?? {};
  const kind = info.kind ?? info.architecture?.arch;
  const size = `${info.resolution}×${info.resolution}`;
  $("model-line").textContent = [
    m.model_id,
    kind ? `${kind}${Array.isArray(info.classes) && info.classes.length ? ", conditional" : ""}` : null,
    `${size} ${info.channels === 1 ? "grayscale" : "colour"}`,
    info.dataset?.name ? `trained on ${info.dataset.name}` : null,
  ]
    .filter(Boolean)
    .join(" · ");

  setupNav();
  renderCard();
  $("auth").hidden = true;
  $("app").hidden = false;
}

async function start() {
  $("page-status").textContent = "";
  try {
    info = await getJSON("/info");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      const hadKey = storedKey() !== null;
      forgetKey();
      askForKey(hadKey ? "The server did not accept this key; check it and try again." : "");
    } else {
      $("model-line").textContent = "";
      $("page-status").textContent = `${error.message} Reload the page to try again.`;
    }
    return;
  }
  if (info.auth?.api_key_required && storedKey() === null) {
    askForKey();
    return;
  }
  await setupModels();
  setup();
  if (!started) {
    started = true;
    $("generate-form").requestSubmit();
    if (canInterpolate()) $("interpolate-form").requestSubmit();
  }
}

/** The model picker: shown when the server serves several models (GET /models). */
async function setupModels() {
  let listing;
  try {
    listing = await getJSON("/models");
  } catch {
    $("model-pick").hidden = true;
    return;
  }
  const picker = $("model-picker");
  picker.dataset.default = listing.default;
  picker.replaceChildren(
    ...listing.models.map((m) =>
      el("option", { value: m.name, text: `${m.name}${m.default ? " (default)" : ""} · ${m.model_id}` }),
    ),
  );
  picker.value = currentModel() ?? listing.default;
  $("model-pick").hidden = listing.models.length < 2;
}

$("model-picker").addEventListener("change", () => {
  const picker = $("model-picker");
  setModel(picker.value === picker.dataset.default ? null : picker.value);
  started = false; // draw the new model's grid and path
  start();
});

// ---------------------------------------------------------------------------------------------
// generate
// ---------------------------------------------------------------------------------------------

$("use-truncation").addEventListener("change", () => {
  $("truncation").disabled = !$("use-truncation").checked;
});

$("new-seed").addEventListener("click", () => {
  $("seed").value = String(randomSeed());
  $("generate-form").requestSubmit();
});

function generateBody() {
  const body = {};
  const seed = numberFrom($("seed"), "seed");
  if (seed !== undefined) body.seed = seed;
  body.n = numberFrom($("n"), "n") ?? 1;
  if ($("use-truncation").checked) {
    const t = numberFrom($("truncation"), "truncation");
    if (t !== undefined) body.truncation = t;
  }
  if (!$("label-field").hidden && $("label").value !== "") body.label = Number($("label").value);
  Object.assign(body, methodBody());
  body.format = "json";
  return body;
}

/** What identifies one generated image: enough to reproduce it alone. */
function recordOf(data, image, body) {
  return {
    src: `data:image/png;base64,${image.png_base64}`,
    png: image.png_base64,
    seed: image.seed,
    latent: image.latent,
    t: image.t,
    index: image.index,
    truncation: data.truncation,
    label: body.label,
    imageLabel: image.label, // the class the server used (conditional models), e.g. seed mod K
    path: body.interpolate ?? null, // the interpolation request the image is on
    method: body.method,
    methodOptions: body.method_options,
    stats: image.method != null && image.method !== "plain" ? image : null,
    interpolation: data.interpolation,
    modelId: data.model?.model_id,
    width: data.width,
    height: data.height,
  };
}

function altText(record) {
  const parts = [];
  if (record.interpolation) {
    const { steps } = record.interpolation;
    parts.push(`Image ${record.index + 1} of ${steps} on the path ${pathText(record.interpolation)}, t = ${fmt(record.t)}`);
  } else {
    parts.push(`Generated image, seed ${record.seed}`);
  }
  if (record.label != null) parts.push(`class ${className(info.classes?.[record.label])}`);
  if (record.method) parts.push(`method ${record.method}`);
  return parts.join(", ");
}

function thumbnail(record, list) {
  const scale = pixelScale(record.width);
  const img = el("img", {
    src: record.src,
    alt: altText(record),
    width: record.width * scale,
    height: record.height * scale,
    class: "pixel",
    "data-seed": record.seed ?? "",
  });
  const button = el("button", { type: "button", class: "thumb", "aria-pressed": "false" }, img);
  button.addEventListener("click", () => select(record, button));
  list.append(el("div", { role: "listitem" }, button));
  return button;
}

$("generate-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  busy(form, async () => {
    const body = generateBody();
    const data = await postJSON("/generate", body);
    const grid = $("grid");
    grid.replaceChildren();
    for (const image of data.images) thumbnail(recordOf(data, image, body), grid);
    $("sampling-status").textContent = samplingText(data);
    if (data.seed != null) $("seed").value = String(data.seed);
    $("grid-empty").hidden = true;
    if (selectedRecord && !selectedRecord.interpolation) $("details").hidden = true;
  });
});

/** One line on how a guided method did (nothing for plain sampling or an older server). */
function samplingText(data) {
  const sampling = data.sampling;
  if (!sampling || !sampling.method || sampling.method === "plain") return "";
  const images = Array.isArray(data.images) ? data.images : [];
  const mean = (key) => images.reduce((sum, im) => sum + (isNumber(im[key]) ? im[key] : 0), 0) / Math.max(1, images.length);
  const parts = [`${sampling.method}:`];
  if (isNumber(sampling.acceptance_rate)) parts.push(`acceptance ${(100 * sampling.acceptance_rate).toFixed(0)} %,`);
  if (images.some((im) => im.steps > 0)) parts.push(`${fmt(mean("steps"))} steps per image,`);
  else parts.push(`${fmt(mean("proposals"))} proposals per image,`);
  const before = images.filter((im) => isNumber(im.logit_before));
  if (before.length) parts.push(`D's mean logit ${mean("logit_before").toFixed(2)} → ${mean("logit_after").toFixed(2)},`);
  if (isNumber(sampling.seconds)) parts.push(`${sampling.seconds.toFixed(2)} s`);
  return parts.join(" ");
}

// ---------------------------------------------------------------------------------------------
// the selected image: its facts and the curl command that returns exactly it
// ---------------------------------------------------------------------------------------------

/** "from seed 1 (class 1) to seed 2 (class 2)": an interpolation record's ends. */
function pathText(interpolation) {
  const end = (seed, label) => {
    const name = label != null ? ` (class ${className(info.classes?.[label])})` : "";
    return `${seed != null ? `seed ${seed}` : "a latent"}${name}`;
  };
  const { from_seed: a, to_seed: b, from_label: ya, to_label: yb } = interpolation;
  return `from ${end(a, ya)} to ${end(b, yb)}`;
}

/** An image between two classes on a path: no single-image request makes it (the ends do). */
function mixesClasses(record) {
  const p = record.interpolation;
  return Boolean(p && p.from_label != null && p.from_label !== p.to_label && record.t > 0 && record.t < 1);
}

function reproduceBody(record) {
  if (mixesClasses(record) && record.path) return { interpolate: record.path, format: "json" };
  const body =
    record.seed != null ? { seed: record.seed, n: 1, format: "png" } : { z: [record.latent], format: "png" };
  if (record.seed != null && record.truncation != null) body.truncation = record.truncation;
  // A seed implies its class; an explicit latent (an interpolation image) does not: send it.
  const label = record.label ?? (record.seed == null ? record.imageLabel : null);
  if (label != null) body.label = label;
  if (record.method != null) body.method = record.method;
  if (record.methodOptions != null) body.method_options = record.methodOptions;
  return body;
}

/** reproduceBody, naming the picked model when it is not the server's default. */
function withModel(body) {
  return currentModel() === null ? body : { ...body, model: currentModel() };
}

function curlCommand(record) {
  let name = record.seed != null ? `seed-${record.seed}.png` : "image.png";
  if (mixesClasses(record) && record.path) name = "path.json";
  const lines = [`curl -s -X POST ${shellQuote(`${location.origin}/generate`)}`];
  if (keyRequired()) lines.push('-H "Authorization: Bearer $GAN_API_KEY"');
  lines.push("-H 'Content-Type: application/json'");
  lines.push(`-d ${shellQuote(jsonText(withModel(reproduceBody(record))))}`);
  lines.push(`-o ${name}`);
  return lines.join(" \\\n     ");
}

function select(record, button) {
  if (selectedButton) selectedButton.setAttribute("aria-pressed", "false");
  selectedButton = button;
  selectedRecord = record;
  button.setAttribute("aria-pressed", "true");

  const scale = pixelScale(record.width) * 2;
  const img = $("detail-img");
  img.src = record.src;
  img.alt = altText(record);
  img.width = record.width * scale;
  img.height = record.height * scale;

  const facts = [];
  if (record.seed != null) facts.push(["Seed", String(record.seed)]);
  if (record.interpolation) {
    facts.push(["Path", pathText(record.interpolation)]);
    facts.push(["Position t", fmt(record.t)]);
  }
  if (mixesClasses(record)) {
    const { from_label: ya, to_label: yb } = record.interpolation;
    const names = [ya, yb].map((y) => className(info.classes?.[y]));
    facts.push(["Class", `${fmt(1 - record.t)} ${names[0]} + ${fmt(record.t)} ${names[1]}`]);
  } else if (record.label != null) facts.push(["Class", className(info.classes?.[record.label])]);
  else if (record.interpolation && record.imageLabel != null)
    facts.push(["Class", className(info.classes?.[record.imageLabel])]);
  if (record.method != null) facts.push(["Sampling", record.method]);
  const stats = record.stats;
  if (stats) {
    if (stats.steps > 0) facts.push(["Steps", fmt(stats.steps)]);
    else facts.push(["Proposals", fmt(stats.proposals)]);
    if (stats.accepted != null) {
      facts.push(
        stats.method === "mh"
          ? ["Chain moved", stats.accepted ? "yes" : "no (the plain image)"]
          : ["Accepted", stats.accepted ? "yes" : "no (the best-scoring proposal)"],
      );
    }
    if (isNumber(stats.logit_before) && isNumber(stats.logit_after))
      facts.push(["D's logit", `${stats.logit_before.toFixed(3)} → ${stats.logit_after.toFixed(3)}`]);
  }
  if (record.truncation != null) facts.push(["Truncation", String(record.truncation)]);
  if (record.modelId) facts.push(["Model", record.modelId]);
  $("detail-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));

  $("detail-curl").textContent = curlCommand(record);
  $("curl-label").replaceChildren(
    "This ",
    el("code", { text: "curl" }),
    mixesClasses(record)
      ? ` command returns the whole path as JSON; this image, between two classes, is images[${record.index}]:`
      : " command returns exactly this image:",
  );
  $("copy-status").textContent = "";
  $("details").hidden = false;
  if (record.interpolation) $("details").scrollIntoView({ block: "nearest" });
}

$("copy-curl").addEventListener("click", async () => {
  const text = $("detail-curl").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-status").textContent = "Copied.";
  } catch {
    getSelection().selectAllChildren($("detail-curl"));
    $("copy-status").textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
});

$("score-selected").addEventListener("click", () => {
  if (!selectedRecord) return;
  const name = selectedRecord.seed != null ? `seed-${selectedRecord.seed}.png` : "generated.png";
  scoreItems([{ blob: base64ToBlob(selectedRecord.png), name }]);
  $("score").scrollIntoView({ block: "start" });
});

// ---------------------------------------------------------------------------------------------
// interpolate: a strip and an animation
// ---------------------------------------------------------------------------------------------

const reducedMotion = matchMedia("(prefers-reduced-motion: reduce)");
const FRAME_MS = 140; // each frame of the path's GIF
const WALK_STEPS = 16; // images on the walk from a projection (at most GAN_MAX_IMAGES)

/** Show the GIF (playing) or its first frame (paused). */
function showAnimation(play) {
  if (!animation.url) return;
  animation.playing = play;
  $("animation-img").src = play ? animation.url : animation.still;
  $("animation-toggle").textContent = play ? "Pause" : "Play";
  $("animation-toggle").setAttribute("aria-pressed", play ? "false" : "true");
}

$("animation-toggle").addEventListener("click", () => showAnimation(!animation.playing));

function pathSpec() {
  const spec = {
    from_seed: numberFrom($("from-seed"), "interpolate.from_seed"),
    to_seed: numberFrom($("to-seed"), "interpolate.to_seed"),
    steps: numberFrom($("steps"), "interpolate.steps"),
  };
  for (const [id, key] of [["from-label", "from_label"], ["to-label", "to_label"]]) {
    if (!$(`${id}-field`).hidden && $(id).value !== "") spec[key] = Number($(id).value);
  }
  return spec;
}

$("interpolate-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  busy(form, async () => {
    const spec = pathSpec();
    const body = { interpolate: spec, format: "json" };
    const data = await postJSON("/generate", body);
    const strip = $("strip");
    strip.replaceChildren();
    const records = data.images.map((image) => recordOf(data, image, body));
    for (const record of records) thumbnail(record, strip);
    const p = data.interpolation;
    $("path-caption").textContent =
      `${records.length} images on the path ${pathText(p)}: slerp between the latents` +
      (p.from_label != null && p.from_label !== p.to_label ? " and a mix of the two classes" : "") +
      ". The ends are exactly the images that Generate makes for them; click one to reproduce it.";
    // The same path as an animated GIF made by the server (format gif), looping.
    const gif = await request("/generate", {
      method: "POST",
      json: { interpolate: { ...spec, frame_ms: FRAME_MS }, format: "gif" },
    });
    if (animation.url) URL.revokeObjectURL(animation.url);
    animation = { url: URL.createObjectURL(await gif.blob()), still: records[0].src, playing: false };
    const scale = pixelScale(data.width) * 2;
    const img = $("animation-img");
    img.width = data.width * scale;
    img.height = data.height * scale;
    img.alt = `Animation of the ${records.length} images on the path ${pathText(p)}`;
    $("animation-save").href = animation.url;
    $("animation").hidden = false;
    showAnimation(!reducedMotion.matches);
  });
});

// ---------------------------------------------------------------------------------------------
// score: D's logit and the realness percentile of uploaded (or generated) images
// ---------------------------------------------------------------------------------------------

function percentileBar(percentile) {
  const fill = el("div", { class: "fill" });
  fill.style.width = `${Math.min(100, Math.max(0, percentile))}%`; // CSSOM: allowed by the CSP
  return el(
    "div",
    {
      class: "bar",
      role: "meter",
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": percentile.toFixed(1),
      "aria-label": "Realness percentile",
    },
    fill,
  );
}

/** A note as a sentence: capital first letter, full stop at the end. */
function sentence(text) {
  const t = String(text).trim();
  if (!t) return t;
  return `${t[0].toUpperCase()}${t.slice(1)}${/[.!?]$/.test(t) ? "" : "."}`;
}

function renderScores(data, items) {
  for (const url of scoreURLs) URL.revokeObjectURL(url);
  scoreURLs = [];
  const ref = data.percentile_reference;
  const notes = [...(data.notes ?? [])];
  if (ref) {
    const count = isNumber(ref.num_images) ? fmt(ref.num_images) : null;
    const source = ref.source ? String(ref.source) : null;
    const what = source && (!count || source.includes(count)) ? source : [count && `${count} images`, source].filter(Boolean).join(", ");
    notes.unshift(`Held-out real images: ${what || "unknown"}. The tick on each bar marks the median real image.`);
  }
  const list = $("score-results");
  list.replaceChildren();
  for (const result of data.results) {
    const item = items[result.index];
    const url = URL.createObjectURL(item.blob);
    scoreURLs.push(url);
    const name = result.filename ?? item.name;
    const lines = [el("p", { class: "score-name", text: name })];
    if (result.class_name != null) {
      const read = result.class_source === "encoder"
        ? `Read as ${result.class_name} by the encoder (${(100 * result.class_probability).toFixed(0)} %), scored as that class`
        : `Scored as class ${result.class_name}`;
      lines.push(el("p", { class: "score-class", text: read }));
    }
    lines.push(el("p", { class: "score-logit", text: `D's logit: ${result.logit.toFixed(3)}` }));
    if (isNumber(result.calibrated_probability)) {
      lines.push(
        el("p", {
          class: "score-calibrated",
          text: `Calibrated probability of real: ${(100 * result.calibrated_probability).toFixed(1)} %`,
        }),
      );
    }
    if (isNumber(result.realness_percentile)) {
      lines.push(
        percentileBar(result.realness_percentile),
        el("p", {
          class: "score-percentile",
          text: `Higher than ${result.realness_percentile.toFixed(1)} % of held-out real images.`,
        }),
      );
    } else {
      lines.push(el("p", { class: "muted", text: "No realness percentile: this checkpoint stores no held-out scores." }));
    }
    lines.push(
      el("p", {
        class: "muted small",
        text: `${result.format} ${result.width}×${result.height} ${result.mode}${result.frames > 1 ? `, first of ${result.frames} frames` : ""}`,
      }),
    );
    list.append(
      el(
        "li",
        { class: "score-item" },
        el("img", { src: url, alt: `Scored image ${name}`, class: "pixel", width: 56, height: 56 }),
        el("div", { class: "score-text" }, ...lines),
      ),
    );
  }
  $("score-notes").textContent = notes.map(sentence).join(" ");
}

function scoreItems(items) {
  if (items.length === 0) return;
  busy($("score-form"), async () => {
    const form = new FormData();
    for (const { blob, name } of items) form.append("files", blob, name);
    const data = await (await request("/score", { method: "POST", body: form })).json();
    renderScores(data, items);
  });
}

const filesToItems = (files) => Array.from(files, (file) => ({ blob: file, name: file.name }));

$("score-files").addEventListener("change", () => {
  scoreItems(filesToItems($("score-files").files));
  $("score-files").value = "";
});

const dropZone = $("drop-zone");
for (const type of ["dragenter", "dragover"]) {
  dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    dropZone.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) {
  dropZone.addEventListener(type, () => dropZone.classList.remove("over"));
}
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  scoreItems(filesToItems(event.dataTransfer?.files ?? []));
});

// ---------------------------------------------------------------------------------------------
// project: an uploaded image -> the latent (and class) whose G(z) draws it, then a walk from it
// ---------------------------------------------------------------------------------------------

/** /info's `project` (null: this kind cannot project, e.g. an ebm) sets up the panel. */
function setupProject() {
  const project = info.project ?? null;
  $("project").hidden = project === null;
  if (project === null) return;
  const steps = project.steps ?? {};
  const max = isNumber(steps.max) ? steps.max : null;
  const standard = isNumber(steps.default) ? steps.default : 200;
  const input = $("project-steps");
  if (max !== null) input.max = max;
  // More than GAN_MAX_PROJECT_STEPS is a 422: the default never is.
  if (!input.value) input.value = String(max === null ? standard : Math.min(standard, max));
  $("project-steps-hint").textContent = [
    max !== null ? `0 to ${max} steps of Adam on the latent` : "Steps of Adam on the latent",
    project.encoder ? "from the encoder's guess" : "from random starts",
  ].join(", ");
  const classes = Array.isArray(info.classes) ? info.classes : [];
  $("project-label-field").hidden = classes.length === 0;
  const tried = isNumber(project.candidate_classes) ? `the ${project.candidate_classes} likeliest classes` : "the likely classes";
  $("project-label").replaceChildren(
    el("option", { value: "", text: `Search ${tried}` }),
    ...classes.map((entry, i) => el("option", { value: String(i), text: className(entry) })),
  );
  const formats = info.preprocessing?.accepted_formats;
  $("project-hint").textContent = [
    Array.isArray(formats) ? formats.join(", ") : null,
    "one image, converted as Score converts it",
  ]
    .filter(Boolean)
    .join("; ");
  $("walk-form").hidden = !canInterpolate();
  $("walk-hint").textContent = classes.length ? "In that seed's own class (seed mod K)." : "";
}

/** "1.234 (higher than 56.7 % of held-out real images)": D's view of one image. */
function discriminatorText(view) {
  if (!view || !isNumber(view.logit)) return null;
  const percentile = isNumber(view.realness_percentile)
    ? ` (higher than ${view.realness_percentile.toFixed(1)} % of held-out real images)`
    : "";
  return `${view.logit.toFixed(3)}${percentile}`;
}

function renderProjection(data, file) {
  if (projection.uploadURL) URL.revokeObjectURL(projection.uploadURL);
  const uploadURL = URL.createObjectURL(file);
  const size = info.resolution;
  const scale = pixelScale(size) * 2;
  const upload = $("project-upload");
  upload.src = uploadURL;
  upload.alt = `Uploaded image ${file.name}`;
  const reconstruction = $("project-reconstruction");
  reconstruction.src = `data:image/png;base64,${data.image}`;
  reconstruction.alt =
    `The generator's reconstruction of ${file.name}` + (data.class_name != null ? `, class ${data.class_name}` : "");
  for (const img of [upload, reconstruction]) {
    img.width = size * scale;
    img.height = size * scale;
  }
  const start = data.start === "encoder" ? "from the encoder's guess" : "from random starts";
  const facts = [
    ["file", "File", file.name],
    ["class", "Class found", data.label != null ? data.class_name ?? String(data.label) : null],
    ["mse", "Pixel MSE", fmt(data.mse)],
    ["distance", "Perceptual distance", isNumber(data.distance) ? `${fmt(data.distance)} (${data.distance_name})` : null],
    ["upload", "D's logit, upload", discriminatorText(data.upload)],
    ["reconstruction", "D's logit, reconstruction", discriminatorText(data.reconstruction)],
    ["search", "Search", `${fmt(data.steps)} steps × ${fmt(data.restarts)} restarts ${start}`],
    ["seconds", "Time", `${data.seconds.toFixed(2)} s`],
  ].filter(([, , value]) => value != null);
  $("project-facts").replaceChildren(
    ...facts.flatMap(([key, name, value]) => [el("dt", { text: name }), el("dd", { text: value, "data-fact": key })]),
  );
  projection = { data, name: file.name, uploadURL, walk: projection.walk };
  clearErrors($("walk-form"));
  $("walk").hidden = true;
  $("projection").hidden = false;
}

function projectFile(file) {
  const form = $("project-form");
  if (!file || form.getAttribute("aria-busy") === "true") return; // one projection at a time
  busy(form, async () => {
    const status = $("project-status");
    const body = new FormData();
    body.append("file", file, file.name);
    const steps = numberFrom($("project-steps"), "steps");
    if (steps !== undefined) body.append("steps", String(steps));
    if (!$("project-label-field").hidden && $("project-label").value !== "") body.append("label", $("project-label").value);
    $("project-file").disabled = true;
    status.textContent = `Projecting ${file.name}…`;
    try {
      const data = await (await request("/project", { method: "POST", body })).json();
      renderProjection(data, file);
      status.textContent = "";
    } catch (error) {
      status.textContent = "";
      throw error;
    } finally {
      $("project-file").disabled = false;
    }
  });
}

$("project-file").addEventListener("change", () => {
  projectFile($("project-file").files[0]);
  $("project-file").value = "";
});

const projectDrop = $("project-drop");
for (const type of ["dragenter", "dragover"]) {
  projectDrop.addEventListener(type, (event) => {
    event.preventDefault();
    projectDrop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) {
  projectDrop.addEventListener(type, () => projectDrop.classList.remove("over"));
}
projectDrop.addEventListener("drop", (event) => {
  event.preventDefault();
  const files = event.dataTransfer?.files ?? [];
  if (files.length > 1) {
    clearErrors($("project-form"));
    showError($("project-form"), new LocalError("file", "Drop one image: a projection is of one image."));
    return;
  }
  projectFile(files[0]);
});

/** Show the walk's GIF (playing) or its first frame, the reconstruction (paused). */
function showWalk(play) {
  const walk = projection.walk;
  if (!walk.url) return;
  walk.playing = play;
  $("walk-img").src = play ? walk.url : walk.still;
  $("walk-toggle").textContent = play ? "Pause" : "Play";
  $("walk-toggle").setAttribute("aria-pressed", play ? "false" : "true");
}

$("walk-toggle").addEventListener("click", () => showWalk(!projection.walk.playing));

$("walk-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  busy(form, async () => {
    const data = projection.data;
    if (!data) return;
    const toSeed = numberFrom($("walk-seed"), "interpolate.to_seed");
    if (toSeed === undefined) throw new LocalError("interpolate.to_seed", "Enter a seed.");
    const steps = Math.max(2, Math.min(WALK_STEPS, info.limits?.max_images ?? WALK_STEPS));
    // From the projected latent in its class to the seed in the seed's own class (to_label
    // left out: to_seed mod K).
    const spec = { from_z: data.z, to_seed: toSeed, steps, frame_ms: FRAME_MS };
    if (data.label != null) spec.from_label = data.label;
    const gif = await request("/generate", { method: "POST", json: { interpolate: spec, format: "gif" } });
    const url = URL.createObjectURL(await gif.blob());
    if (projection.walk.url) URL.revokeObjectURL(projection.walk.url);
    projection.walk = { url, still: $("project-reconstruction").src, playing: false };
    const scale = pixelScale(info.resolution) * 2;
    const img = $("walk-img");
    img.width = info.resolution * scale;
    img.height = info.resolution * scale;
    img.alt = `Animation of ${steps} images on the path from the projection of ${projection.name} to seed ${toSeed}`;
    $("walk-save").href = url;
    $("walk").hidden = false;
    showWalk(!reducedMotion.matches);
  });
});

// ---------------------------------------------------------------------------------------------
// the model card
// ---------------------------------------------------------------------------------------------

function factsBlock(title, rows) {
  const shown = rows.filter(([, v]) => v != null && v !== "");
  if (shown.length === 0) return null;
  return el(
    "div",
    { class: "card-block" },
    el("h3", { text: title }),
    el("dl", { class: "facts" }, ...shown.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: isNumber(v) ? fmt(v) : String(v) })])),
  );
}

const METRICS = {
  fid: ["FID", "lower is better"],
  fid_quick: ["quick FID (during training)", "lower is better"],
  kid: ["KID", "lower is better"],
  precision: ["precision", "higher is better"],
  recall: ["recall", "higher is better"],
  coverage_entropy: ["class coverage entropy", "higher is better"],
  coverage_min_share: ["smallest class share", "higher is better"],
};

function metricsBlock(metrics) {
  const names = Object.keys(metrics).filter((k) => isNumber(metrics[k]) && !k.endsWith("_std"));
  const block = el("div", { class: "card-block wide" }, el("h3", { text: "Evaluation" }));
  if (names.length === 0) {
    block.append(el("p", { class: "muted", text: "This checkpoint stores no evaluation metrics." }));
    return block;
  }
  const evaluation = metrics.eval && typeof metrics.eval === "object" ? metrics.eval : {};
  const baseline = evaluation.baseline && typeof evaluation.baseline === "object" ? evaluation.baseline : {};
  const withStd = (source, k) =>
    isNumber(source[k]) ? `${fmt(source[k])}${isNumber(source[`${k}_std`]) ? ` ± ${fmt(source[`${k}_std`])}` : ""}` : "–";
  const table = el(
    "table",
    { class: "metrics" },
    el(
      "thead",
      {},
      el("tr", {}, el("th", { scope: "col", text: "metric" }), el("th", { scope: "col", text: "this model" }), el("th", { scope: "col", text: "real vs real" })),
    ),
    el(
      "tbody",
      {},
      ...names.map((k) =>
        el(
          "tr",
          { "data-metric": k },
          el("th", { scope: "row" }, METRICS[k]?.[0] ?? k, METRICS[k] ? el("span", { class: "muted small", text: ` (${METRICS[k][1]})` }) : null),
          el("td", { text: withStd(metrics, k) }),
          el("td", { text: withStd(baseline, k) }),
        ),
      ),
    ),
  );
  block.append(table);
  const how = [
    isNumber(evaluation.num_samples) ? `${fmt(evaluation.num_samples)} samples` : null,
    evaluation.reference ? `against ${evaluation.reference}` : null,
    evaluation.evaluated_at ? `on ${evaluation.evaluated_at}` : null,
  ].filter(Boolean);
  block.append(
    el("p", {
      class: "muted small",
      text: `${how.length ? `Measured with ${how.join(" ")}. ` : ""}"Real vs real" is the same metric between two sets of real images: the best a generator could hope for.`,
    }),
  );
  return block;
}

function renderCard() {
  const m = info.model ?? {};
  const arch = info.architecture ?? {};
  const dataset = info.dataset ?? {};
  const training = info.training ?? {};
  const limits = info.limits ?? {};
  const rs = info.real_scores;
  const bound = (x) => (x === 2 ** 53 - 1 ? "2⁵³ − 1" : fmt(x));
  const range = (r) => (Array.isArray(r) ? `${bound(r[0])} to ${bound(r[1])}` : null);
  const knownArch = ["arch", "resolution", "channels", "z_dim", "g_width", "d_width"];
  const blocks = [
    factsBlock("Model", [
      ["Id", m.model_id],
      ["Kind", info.kind],
      ["Training step", m.step],
      ["Checkpoint hash", m.checkpoint_hash],
      ["Created", info.created_at],
      ["Served on", info.device],
    ]),
    factsBlock("Architecture", [
      ["Design", arch.arch],
      ["Images", `${info.resolution}×${info.resolution}, ${info.channels} channel${info.channels === 1 ? "" : "s"}`],
      ["Latent size (z_dim)", info.z_dim],
      ["Generator width", arch.g_width],
      ["Discriminator width", arch.d_width],
      ["Classes", Array.isArray(info.classes) ? info.classes.map(className).join(", ") : null],
      ...Object.entries(arch)
        .filter(([k, v]) => !knownArch.includes(k) && (typeof v !== "object" || v === null))
        .map(([k, v]) => [k, v]),
    ]),
    factsBlock("Dataset", [
      ["Name", dataset.name],
      ["Split", dataset.split],
      ["Training images", dataset.num_images],
      ["Held out for the percentile", dataset.heldout_source],
    ]),
    factsBlock("Training", [
      // The served checkpoint is one the run saved (e.g. its best), not necessarily its last.
      isNumber(training.steps) && training.steps !== m.step
        ? ["Checkpoint", `at step ${fmt(m.step)} of a ${fmt(training.steps)}-step run`]
        : ["Steps", m.step],
      ["Time", duration(training.train_seconds ?? training.time_budget_s)],
      ["Batch size", training.batch_size],
      ["Loss", training.loss],
      ["Learning rates (G, D)", isNumber(training.lr_g) ? `${training.lr_g}, ${training.lr_d}` : null],
      ["EMA decay", training.ema_decay],
      ["Seed", training.seed],
    ]),
    metricsBlock(info.metrics ?? {}),
    factsBlock("Limits", [
      ["Images per request", limits.max_images],
      ["Request body", bytes(limits.max_body_bytes)],
      ["Pixels per uploaded image", limits.max_image_pixels],
      ["Seeds", range(limits.seed_range)],
      ["Truncation", range(limits.truncation_range)],
      ["API key", info.auth?.api_key_required ? "required" : "not required"],
    ]),
    factsBlock("Realness reference", [
      ["Held-out real images", rs?.num_images],
      ["Source", rs?.source],
      ["Quantile levels", rs?.levels],
    ]) ?? el("div", { class: "card-block" }, el("h3", { text: "Realness reference" }), el("p", { class: "muted", text: "None: scores come without a percentile." })),
  ];
  const raw = el(
    "details",
    { class: "raw" },
    el("summary", { text: "Everything /info says (JSON)" }),
    el("pre", { class: "code", text: JSON.stringify(info, null, 2) }),
  );
  const samples = el("div", { class: "card-block card-samples" }, el("h3", { text: "Samples" }));
  $("card-body").replaceChildren(el("div", { class: "card-grid" }, ...blocks.filter(Boolean), samples), raw);
  showCardSamples(samples, Math.min(64, limits.max_images ?? 64));
}

/** The checkpoint's own sample grid: image seeds 0..n-1, as `gan-sample --seed 0` writes them. */
async function showCardSamples(block, n) {
  try {
    const response = await request("/generate", { method: "POST", json: { n, seed: 0, format: "grid" } });
    const url = URL.createObjectURL(await response.blob());
    const img = el("img", { class: "pixel card-grid-image", src: url, alt: `${n} samples, image seeds 0 to ${n - 1}` });
    block.append(img, el("p", { class: "muted", text: `Image seeds 0 to ${n - 1} (gan-sample --seed 0 --num ${n}).` }));
  } catch (error) {
    block.append(el("p", { class: "muted", text: `No samples: ${error.message}` }));
  }
}

start();
