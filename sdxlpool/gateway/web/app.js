// sdxlpool web page: the form, one generation at a time over the WebSocket /v1/ws with live
// progress, the pool's GPU models as toggles (GET /v1/pool, every few seconds), and the images of
// this visit (in memory only). Plain ES module, no framework, no build step, nothing from outside.
//
// WebSocket protocol (sdxlpool/gateway/routes/generate.py): send one JSON object of A1111 txt2img
// fields plus `gpus` and an `id`; receive queued, (starting,) assigned, progress..., then done or error, each
// tagged with that id. {"cancel": true} stops the running generation. With an image to start from
// the object carries A1111's img2img fields: `init_images` (a data URL), `denoising_strength`, and
// for inpainting `mask` (a black and white PNG data URL at the image's size, white = redraw) and
// `inpainting_mask_invert`. Hires fix (text to image only): `enable_hr`, `hr_scale`, `hr_upscaler`.

const DEFAULT_SAMPLER = "DPM++ SDE Karras";
const POOL_REFRESH_MS = 4000;
const INIT_TYPES = ["image/png", "image/jpeg", "image/webp"];
const MAX_INIT_PIXELS = 1024 * 1024; // an upload sets the output size to its own, scaled down to this area
const DEFAULT_HR_UPSCALER = "Latent";
const MASK_PAINT = "#ff2e63"; // shown at the canvas's opacity; any painted pixel is white in the mask sent

const $ = (id) => document.getElementById(id);

const FIELD_LABELS = {
  prompt: "Prompt",
  negative_prompt: "Negative prompt",
  sampler_name: "Sampler",
  scheduler: "Sampler",
  steps: "Steps",
  cfg_scale: "CFG scale",
  width: "Width",
  height: "Height",
  seed: "Seed",
  refiner_checkpoint: "Refiner",
  refiner_switch_at: "Refiner switch at",
  gpus: "GPU models",
  api_key: "API key",
  init_images: "Image for img2img",
  mask: "Mask",
  denoising_strength: "Denoising strength",
  inpainting_mask_invert: "Invert",
  enable_hr: "Hires fix",
  hr_scale: "Upscale by",
  hr_upscaler: "Upscaler",
};

const state = {
  socket: null, // the open (or opening) WebSocket
  opened: null, // a promise of it being open
  apiKey: "",
  counter: 0,
  running: null, // the generation under way: {id, request, placement}
  models: [], // GET /v1/pool's models
  off: new Set(), // GPU models (slugs) the user switched off
  catalogLoaded: false,
  defaultsApplied: false, // the pool's default steps and size put in the form (once)
  poolTimer: 0,
  results: [], // every finished image of this visit, oldest first
  shown: null, // the result on display
  init: null, // the image to start from: {dataUrl, name, width, height}
  masked: false, // whether any of the mask is painted (then the request is an inpainting)
  strokes: new Map(), // pointer id -> its last point, while that pointer paints
  upscalersLoaded: false,
};

// -- Small helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function seconds(value) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "–";
  const n = Number(value);
  return n < 10 ? `${n.toFixed(2)} s` : `${n.toFixed(1)} s`;
}

function price(value) {
  return value === null || value === undefined ? "" : `$${Number(value).toFixed(2)}/h`;
}

function waitText(value) {
  const n = Math.max(1, Math.ceil(Number(value) || 1));
  if (n < 90) return `${n} second${n === 1 ? "" : "s"}`;
  return `${Math.ceil(n / 60)} minutes`;
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function fieldOf(detail) {
  // "init_images.0: not an image" -> the form field ("init_images") and the reason
  const at = detail.indexOf(":");
  if (at < 0) return { field: "body", reason: detail };
  return { field: detail.slice(0, at).trim().split(".")[0], reason: detail.slice(at + 1).trim() };
}

function pngSize(base64) {
  // A PNG's width and height from its IHDR chunk (bytes 16 to 24), without decoding the image.
  try {
    const head = atob(String(base64).slice(0, 32));
    if (head.slice(1, 4) !== "PNG") return null;
    const int = (at) => ((head.charCodeAt(at) << 24) | (head.charCodeAt(at + 1) << 16)
      | (head.charCodeAt(at + 2) << 8) | head.charCodeAt(at + 3)) >>> 0;
    return { width: int(16), height: int(20) };
  } catch {
    return null;
  }
}

function modelName(slug) {
  const model = state.models.find((m) => m.gpu_model === slug);
  return model ? model.gpu_name : slug;
}

// -- Status, progress and the alert region -------------------------------------------------

function setStatus(text) {
  $("status").textContent = text;
}

function setProgress(step, steps) {
  const bar = $("progress");
  if (step === null) {
    bar.removeAttribute("value"); // indeterminate
    $("progress-count").textContent = "";
    return;
  }
  bar.max = Math.max(1, steps);
  bar.value = Math.min(step, bar.max);
  $("progress-count").textContent = steps ? `${step} / ${steps}` : "";
}

function clearAlert() {
  $("alert").replaceChildren();
  for (const input of document.querySelectorAll("[aria-invalid='true']")) {
    input.removeAttribute("aria-invalid");
    const message = $(`${input.id}-error`);
    if (message) message.remove();
    const described = (input.getAttribute("aria-describedby") || "").split(" ")
      .filter((id) => id && id !== `${input.id}-error`);
    if (described.length) input.setAttribute("aria-describedby", described.join(" "));
    else input.removeAttribute("aria-describedby");
  }
}

function showAlert(title, text, detail) {
  const parts = [el("strong", { text: title })];
  if (text) parts.push(el("p", { text }));
  if (detail && detail !== text) parts.push(el("p", { class: "detail", text: detail }));
  const alert = $("alert");
  alert.replaceChildren(...parts);
  alert.scrollIntoView({ block: "nearest" });
}

function markInvalid(field, message) {
  const input = field === "gpus" ? document.querySelector("#gpu-list input") : $(field);
  if (!input) return null;
  input.setAttribute("aria-invalid", "true");
  const note = el("small", { id: `${input.id}-error`, class: "field-error", text: message });
  input.closest(".field").append(note);
  const described = input.getAttribute("aria-describedby");
  input.setAttribute("aria-describedby", described ? `${described} ${note.id}` : note.id);
  return input;
}

class FieldError extends Error {
  constructor(field, message) {
    super(`${field}: ${message}`);
    this.field = field;
    this.reason = message;
  }
}

function showFieldError(field, reason) {
  const label = FIELD_LABELS[field] || field;
  showAlert(`Check “${label}”`, `${label}: ${reason}`);
  const input = markInvalid(field, reason);
  if (input) input.focus();
}

// -- The form ------------------------------------------------------------------------------

function number(id, { integer = false, empty = undefined } = {}) {
  const raw = $(id).value.trim();
  if (raw === "") {
    if (empty !== undefined) return empty;
    throw new FieldError(id, "enter a number");
  }
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new FieldError(id, "enter a number");
  if (integer && !Number.isInteger(value)) throw new FieldError(id, "enter a whole number");
  return value;
}

function chosenGpus() {
  return state.models.map((m) => m.gpu_model).filter((slug) => !state.off.has(slug));
}

function readForm() {
  const request = {
    prompt: $("prompt").value,
    negative_prompt: $("negative_prompt").value,
    sampler_name: $("sampler_name").value,
    steps: number("steps", { integer: true }),
    cfg_scale: number("cfg_scale"),
    width: number("width", { integer: true }),
    height: number("height", { integer: true }),
    seed: number("seed", { integer: true, empty: -1 }),
    refiner_switch_at: Number($("refiner_switch_at").value),
  };
  const refiner = $("refiner_checkpoint").value;
  if (refiner) request.refiner_checkpoint = refiner;
  if (state.init) {
    request.init_images = [state.init.dataUrl];
    request.denoising_strength = Number($("denoising_strength").value);
    if (state.masked) {
      request.mask = maskDataUrl();
      request.inpainting_mask_invert = $("inpainting_mask_invert").checked ? 1 : 0;
    }
  } else if ($("enable_hr").checked) {
    request.enable_hr = true;
    request.hr_scale = number("hr_scale");
    if (request.hr_scale < 1 || request.hr_scale > 4) throw new FieldError("hr_scale", "must be between 1 and 4");
    request.hr_upscaler = $("hr_upscaler").value || DEFAULT_HR_UPSCALER;
  }
  if (state.models.length) {
    const gpus = chosenGpus();
    if (!gpus.length) throw new FieldError("gpus", "switch on at least one GPU model");
    request.gpus = gpus;
  }
  return request;
}

function setRunning(running) {
  $("generate").disabled = running;
  $("generate").textContent = running ? "Generating…" : "Generate";
  $("cancel").hidden = !running;
  $("result").setAttribute("aria-busy", running ? "true" : "false");
}

// -- The WebSocket -------------------------------------------------------------------------

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = state.apiKey ? `?api_key=${encodeURIComponent(state.apiKey)}` : "";
  return `${scheme}//${location.host}/v1/ws${query}`;
}

function connect() {
  if (state.socket && state.socket.readyState <= WebSocket.OPEN) return state.opened;
  const socket = new WebSocket(socketUrl());
  state.socket = socket;
  state.opened = new Promise((resolve, reject) => {
    socket.addEventListener("open", () => resolve(socket), { once: true });
    socket.addEventListener("close", () => reject(new Error("the WebSocket closed")), { once: true });
  });
  state.opened.catch(() => {}); // handled where it is awaited
  socket.addEventListener("message", (message) => onMessage(message));
  socket.addEventListener("close", () => onClose(socket));
  return state.opened;
}

function disconnect() {
  const socket = state.socket;
  state.socket = null;
  if (socket) socket.close();
}

function onClose(socket) {
  if (state.socket !== socket) return; // closed on purpose (a new API key)
  state.socket = null;
  if (state.running) {
    finish();
    setStatus("Connection lost.");
    showAlert("Connection lost",
      "The connection to the gateway closed during the generation. Press Generate to try again.");
  }
}

function onMessage(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return;
  }
  const run = state.running;
  if (!run || (event.id !== undefined && event.id !== run.id)) return;
  switch (event.event) {
    case "queued":
      setStatus(event.position > 0 ? `Queued at the gateway, ${event.position} ahead…` : "Queued at the gateway…");
      setProgress(null);
      break;
    case "starting": {
      // no worker of the allowed GPU models is up yet: the autoscaler is starting one
      const names = (event.gpu_names || event.gpu_models || []).join(", ");
      setStatus(names ? `Starting a worker (${names})…` : "Starting a worker…");
      setProgress(null);
      break;
    }
    case "assigned":
      onAssigned(run, event);
      break;
    case "progress":
      onProgress(run, event);
      break;
    case "done":
      onDone(run, event);
      break;
    case "error":
      onError(run, event);
      break;
    default:
      break;
  }
}

function where(placement) {
  // " (provider, location)", or nothing when the backend names neither
  const place = [placement.provider, placement.location].filter(Boolean).join(", ");
  return place ? ` (${place})` : "";
}

function onAssigned(run, event) {
  run.placement = event;
  setStatus(`Running on ${event.gpu_name}${where(event)}…`);
  const retry = event.attempt > 1 ? ` · attempt ${event.attempt}` : "";
  const provider = event.provider || "unknown provider";
  const site = event.location || "unknown location";
  $("placement").textContent = `${event.gpu_name} · ${provider} · ${site} · worker ${event.worker}${retry}`;
  setProgress(0, run.request.steps);
}

function onProgress(run, event) {
  const gpu = run.placement ? ` on ${run.placement.gpu_name}` : "";
  const eta = event.eta_seconds > 0 ? ` · about ${Math.ceil(event.eta_seconds)} s left` : "";
  setStatus(`Step ${event.step} of ${event.steps}${gpu}${eta}`);
  setProgress(event.step, event.steps);
}

function finish() {
  state.running = null;
  setRunning(false);
  refreshPoolIn(300); // the worker is free again: show it soon, not at the next regular refresh
}

function onDone(run, event) {
  finish();
  const size = pngSize(event.image) || { width: run.request.width, height: run.request.height };
  const result = {
    n: state.results.length + 1,
    src: `data:image/png;base64,${event.image}`,
    width: size.width,
    height: size.height,
    info: event.info || {},
    prompt: run.request.prompt,
    request: run.request,
    seed: event.seed,
    gpuName: event.gpu_name,
    gpuModel: event.gpu_model,
    provider: event.provider,
    location: event.location,
    worker: event.worker,
    attempts: event.attempts,
    timings: event.timings || {},
  };
  state.results.push(result);
  const steps = run.request.steps;
  setProgress(steps, steps);
  setStatus(`Done on ${result.gpuName}${where(result)} in ${seconds(result.timings.total_seconds)}.`);
  show(result);
}

function onError(run, event) {
  finish();
  setProgress(0, 1);
  $("progress-count").textContent = "";
  if (event.error === "cancelled") {
    setStatus("Cancelled.");
    return;
  }
  setStatus(`Failed (${event.status || event.error}): see the message above.`);
  const detail = String(event.detail || "");
  const status = Number(event.status);
  if (status === 422) {
    const { field, reason } = fieldOf(detail);
    const label = FIELD_LABELS[field] || field;
    showAlert(`Check “${label}” (422)`, `${label}: ${reason}`);
    const input = markInvalid(field in FIELD_LABELS ? field : "", reason);
    if (input) input.focus();
  } else if (status === 429) {
    const why = event.error === "rate_limited" ? "Too many requests (429)" : "The pool is busy (429)";
    showAlert(why, `Wait ${waitText(event.retry_after)} and try again.`, detail);
  } else if (status === 503) {
    const tried = /GPU models tried: ([^;]+)/.exec(detail);
    const names = tried ? tried[1].trim() : (run.request.gpus || []).map(modelName).join(", ");
    const text = `No worker is up for ${names || "the chosen GPU models"}.`
      + " Switch on another GPU model or try again later.";
    showAlert("No GPU available (503)", text, detail);
  } else if (status === 401) {
    $("api-key-field").hidden = false;
    showAlert("API key needed (401)", "This gateway needs an API key: enter it below and press “Use key”.", detail);
    $("api_key").focus();
  } else if (status === 404) {
    showAlert("Not found (404)", detail);
    if (/sampler|scheduler/i.test(detail)) markInvalid("sampler_name", detail);
  } else {
    showAlert(`Generation failed (${event.status || "error"})`, detail || event.error);
  }
}

async function generate(submit) {
  submit.preventDefault();
  if (state.running) return;
  clearAlert();
  let request;
  try {
    request = readForm();
  } catch (error) {
    if (error instanceof FieldError) {
      showFieldError(error.field, error.reason);
      return;
    }
    throw error;
  }
  state.counter += 1;
  const run = { id: `web-${state.counter}`, request, placement: null };
  state.running = run;
  setRunning(true);
  setStatus("Connecting to the gateway…");
  $("placement").textContent = "";
  setProgress(null);
  if (window.matchMedia("(max-width: 640px)").matches) $("result").scrollIntoView({ block: "start" });
  let socket;
  try {
    socket = await connect();
  } catch {
    if (state.running === run) {
      finish();
      setStatus("Not connected.");
      showAlert("Cannot reach the gateway",
        "The WebSocket /v1/ws did not open. Check that the gateway is running and try again.");
    }
    return;
  }
  if (state.running !== run) return;
  socket.send(JSON.stringify({ ...request, id: run.id }));
  setStatus("Sent, waiting for the gateway…");
}

function cancel() {
  const run = state.running;
  if (run && state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ cancel: true, id: run.id }));
    setStatus("Cancelling…");
  }
}

function useKey() {
  state.apiKey = $("api_key").value.trim();
  if (state.running) finish(); // closing the socket stops it on the gateway too
  disconnect(); // the key goes with the next connection (?api_key=)
  clearAlert();
  setStatus(state.apiKey ? "API key set. Press Generate." : "API key cleared.");
}

// -- Results -------------------------------------------------------------------------------

function metaRow(term, value) {
  return el("div", {}, el("dt", { text: term }), el("dd", { text: value }));
}

function show(result) {
  state.shown = result;
  const image = $("result-image");
  image.src = result.src;
  image.alt = `Generated image ${result.n}: ${result.prompt}`;
  image.width = result.width;
  image.height = result.height;
  const t = result.timings;
  const denoising = result.info.denoising_strength;
  $("result-meta").replaceChildren(
    metaRow("GPU", result.gpuName),
    metaRow("Provider", result.provider || "–"),
    metaRow("Location", result.location || "–"),
    metaRow("Queue time", seconds(t.queue_seconds)),
    metaRow("Inference time", seconds(t.inference_seconds)),
    metaRow("Total", seconds(t.total_seconds)),
    metaRow("Seed", String(result.seed ?? "–")),
    metaRow("Worker", result.attempts > 1 ? `${result.worker} (attempt ${result.attempts})` : result.worker),
    metaRow("Size", `${result.width} × ${result.height}`),
    metaRow("Sampler", `${result.request.sampler_name}, ${result.request.steps} steps`),
    metaRow("Mode", mode(result.request)),
  );
  if (denoising !== null && denoising !== undefined) {
    $("result-meta").append(metaRow("Denoising strength", String(denoising)));
  }
  const link = $("download");
  link.href = result.src;
  link.download = `sdxlpool-${result.n}-${result.seed ?? "image"}.png`;
  $("current").hidden = false;
  $("placeholder").hidden = true;
  renderHistory();
}

function mode(request) {
  if (request.mask) return request.inpainting_mask_invert ? "Inpaint (inverted mask)" : "Inpaint";
  if (request.init_images) return "Image to image";
  if (request.enable_hr) return `Text to image, hires fix × ${request.hr_scale}`;
  return "Text to image";
}

function renderHistory() {
  const earlier = state.results.filter((r) => r !== state.shown).reverse();
  $("history-empty").hidden = earlier.length > 0;
  $("history").replaceChildren(...earlier.map((result) => {
    const button = el("button", {
      type: "button",
      class: "thumb",
      "aria-label": `Show image ${result.n}: ${result.prompt} (${result.gpuName}, seed ${result.seed})`,
    }, el("img", { src: result.src, alt: "" }));
    button.addEventListener("click", () => {
      show(result);
      $("result-image").scrollIntoView({ block: "nearest" });
      $("download").focus();
    });
    const caption = `#${result.n} · ${result.gpuName} · ${seconds(result.timings.total_seconds)}`;
    return el("li", {}, button, el("p", { text: caption }));
  }));
}

// -- The pool: GPU toggles and the catalog (samplers, refiners) -----------------------------

function availability(model) {
  if (model.workers === 0) return { state: "down", text: "starts on demand" }; // scale from zero
  if (model.up === 0) return { state: "down", text: model.workers === 1 ? "down" : `0 of ${model.workers} up` };
  const up = model.workers === model.up ? `${model.up} up` : `${model.up} of ${model.workers} up`;
  if (model.busy >= model.up) return { state: "busy", text: `${up} · all busy` };
  return { state: "ok", text: model.busy ? `${up} · ${model.busy} busy` : `${up} · idle` };
}

function gpuItem(model, index) {
  const id = `gpu-${model.gpu_model.replace(/[^a-z0-9-]/gi, "_")}`;
  const input = el("input", {
    type: "checkbox", id, class: "switch", role: "switch", "aria-describedby": `${id}-info`,
  });
  input.dataset.gpu = model.gpu_model;
  input.checked = !state.off.has(model.gpu_model);
  input.addEventListener("change", () => {
    if (input.checked) state.off.delete(model.gpu_model);
    else state.off.add(model.gpu_model);
  });
  const label = el("label", { for: id, class: "gpu-name" });
  const info = el("span", { class: "gpu-info", id: `${id}-info` },
    el("span", { class: "dot", "aria-hidden": "true" }), el("span", { class: "gpu-state" }));
  const item = el("li", { class: "gpu" }, input, label, info);
  item.addEventListener("click", (click) => {
    if (click.target === item || click.target.closest(".gpu-info")) input.click(); // the whole row toggles
  });
  item.dataset.gpu = model.gpu_model;
  item.dataset.index = String(index);
  return item;
}

function renderGpus() {
  const list = $("gpu-list");
  const wanted = new Set(state.models.map((m) => m.gpu_model));
  for (const item of [...list.children]) {
    if (!wanted.has(item.dataset.gpu)) item.remove();
  }
  state.models.forEach((model, index) => {
    let item = [...list.children].find((li) => li.dataset.gpu === model.gpu_model);
    if (!item) {
      item = gpuItem(model, index);
      const after = [...list.children].find((li) => Number(li.dataset.index) > index);
      list.insertBefore(item, after || null);
    }
    const { state: up, text } = availability(model);
    item.dataset.state = up;
    item.querySelector(".dot").dataset.state = up;
    item.querySelector(".gpu-name").textContent = model.gpu_name;
    item.querySelector(".gpu-state").textContent = [text, price(model.pricePerHour)].filter(Boolean).join(" · ");
  });
  $("gpu-empty").hidden = state.models.length > 0;
}

function renderSummary(error) {
  const summary = $("pool-summary");
  if (error) {
    summary.dataset.state = "down";
    $("pool-summary-text").textContent = "Pool status unavailable";
    return;
  }
  const workers = state.models.reduce((n, m) => n + m.workers, 0);
  const up = state.models.reduce((n, m) => n + m.up, 0);
  const busy = state.models.reduce((n, m) => n + m.busy, 0);
  summary.dataset.state = up === 0 ? "down" : busy >= up ? "busy" : "ok";
  const models = `${state.models.length} GPU model${state.models.length === 1 ? "" : "s"}`;
  const plural = workers === 1 ? "" : "s";
  $("pool-summary-text").textContent = `${up} of ${workers} worker${plural} up · ${busy} busy · ${models}`;
}

async function refreshPool() {
  window.clearTimeout(state.poolTimer);
  try {
    if (!document.hidden || !state.models.length) {
      const pool = await getJson("/v1/pool");
      state.models = pool.models;
      if (!state.defaultsApplied && pool.defaults) applyPoolDefaults(pool.defaults);
      renderGpus();
      renderSummary();
      if (pool.api_key_required) $("api-key-field").hidden = false;
    }
  } catch {
    renderSummary(true);
  }
  if (!state.catalogLoaded) await loadCatalog();
  refreshPoolIn(POOL_REFRESH_MS);
}

function applyPoolDefaults(defaults) {
  // Once, on the first answer: the pool's own steps and size (a CPU pool of tiny models asks for
  // small images, so a first image takes seconds, not minutes).
  state.defaultsApplied = true;
  if (defaults.steps) $("steps").value = String(defaults.steps);
  if (defaults.width && defaults.height) {
    $("width").value = String(defaults.width);
    $("height").value = String(defaults.height);
    syncSizePreset();
  }
}

function refreshPoolIn(ms) {
  window.clearTimeout(state.poolTimer);
  state.poolTimer = window.setTimeout(refreshPool, ms);
}

function samplerOptions(samplers, schedulers) {
  // A1111 names a sampler with its schedule ("DPM++ SDE Karras"); the plain name is "automatic".
  const labels = new Map(schedulers.map((s) => [s.name, s.label]));
  return samplers.map((sampler) => {
    const names = [sampler.name];
    for (const schedule of (sampler.options && sampler.options.schedulers) || []) {
      if (schedule !== "automatic" && labels.has(schedule)) names.push(`${sampler.name} ${labels.get(schedule)}`);
    }
    return { group: sampler.name, names };
  });
}

async function loadCatalog() {
  let samplers;
  let schedulers;
  try {
    [samplers, schedulers] = await Promise.all([
      getJson("/sdapi/v1/samplers"),
      getJson("/sdapi/v1/schedulers").catch(() => []),
    ]);
  } catch {
    return; // no worker answered yet: the next pool refresh tries again
  }
  const select = $("sampler_name");
  const current = select.value || DEFAULT_SAMPLER;
  const groups = samplerOptions(samplers, schedulers);
  const all = groups.flatMap((g) => g.names);
  select.replaceChildren(...groups.map((g) => el("optgroup", { label: g.group },
    ...g.names.map((name) => el("option", { value: name, text: name })))));
  select.value = all.includes(current) ? current : all.includes(DEFAULT_SAMPLER) ? DEFAULT_SAMPLER : all[0];
  state.catalogLoaded = true;
  try {
    const models = await getJson("/sdapi/v1/sd-models");
    const refiners = models.filter((m) => m.sdxlpool_kind === "refiner");
    const choice = $("refiner_checkpoint");
    const none = refiners.length ? "None" : "None (no refiner in the pool)";
    choice.replaceChildren(el("option", { value: "", text: none }),
      ...refiners.map((m) => el("option", { value: m.model_name, text: m.model_name })));
    if (refiners.length) choice.value = refiners[0].model_name;
  } catch {
    // the refiner list is optional: "None" stays
  }
}

// -- The image to start from (img2img) and its mask (inpainting) ---------------------------

function outputSize(width, height) {
  // The output size an uploaded image sets: its own, in steps of 8, scaled down to MAX_INIT_PIXELS.
  const scale = Math.min(1, Math.sqrt(MAX_INIT_PIXELS / (width * height)));
  const round = (n) => Math.max(64, Math.round((n * scale) / 8) * 8);
  return [round(width), round(height)];
}

function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(String(reader.result)));
    reader.addEventListener("error", () => reject(reader.error));
    reader.readAsDataURL(file);
  });
}

async function setInitImage(file) {
  clearAlert();
  if (!file) return;
  if (!INIT_TYPES.includes(file.type)) {
    $("init_images").value = "";
    showFieldError("init_images", `${file.name || "that file"} is not a PNG, JPEG or WebP image`);
    return;
  }
  let dataUrl;
  const image = new Image();
  try {
    dataUrl = await readDataUrl(file);
    image.src = dataUrl;
    await image.decode();
  } catch {
    $("init_images").value = "";
    showFieldError("init_images", `${file.name} could not be read as an image`);
    return;
  }
  const { naturalWidth: width, naturalHeight: height } = image;
  const thumb = $("init-thumb");
  thumb.src = dataUrl;
  await thumb.decode().catch(() => {}); // shown at its size before the mask is painted on it
  state.init = { dataUrl, name: file.name, width, height };
  thumb.alt = `The image to start from: ${file.name}, ${width} × ${height}`;
  const canvas = $("mask");
  canvas.width = width; // also clears it
  canvas.height = height;
  setMasked(false);
  const [outWidth, outHeight] = outputSize(width, height);
  $("width").value = String(outWidth);
  $("height").value = String(outHeight);
  syncSizePreset();
  syncModes();
}

function removeInitImage() {
  state.init = null;
  state.strokes.clear();
  $("init_images").value = "";
  $("init-thumb").removeAttribute("src");
  setMasked(false);
  syncModes();
  $("init_images").focus();
}

function syncModes() {
  // The image controls show with an image; the hires fix is for text to image only.
  const withImage = state.init !== null;
  $("init-panel").hidden = !withImage;
  $("enable_hr").disabled = withImage;
  $("hires-options").hidden = withImage || !$("enable_hr").checked;
  $("hires-help").textContent = withImage
    ? "Hires fix is for text to image only: remove the image to use it."
    : "Makes the image at the size above, then enlarges it and refines the details (text to image only).";
  syncHiresSize();
}

function syncHiresSize() {
  const note = $("hires-size");
  const scale = Number($("hr_scale").value);
  const on = $("enable_hr").checked && !$("enable_hr").disabled && scale >= 1;
  note.hidden = !on;
  if (on) {
    const width = Math.floor(Number($("width").value) * scale);
    const height = Math.floor(Number($("height").value) * scale);
    note.textContent = `Final size: ${width} × ${height}`;
  }
}

function setMasked(masked) {
  state.masked = masked;
  const invert = $("inpainting_mask_invert").checked;
  $("mask").dataset.invert = String(invert);
  $("mask-state").textContent = !masked ? "No mask: the whole image is redrawn (img2img)."
    : invert ? "Mask painted: what is not painted is redrawn (inpainting)."
      : "Mask painted: the painted part is redrawn (inpainting).";
}

function maskContext() {
  return $("mask").getContext("2d", { willReadFrequently: true });
}

function maskRect(x, y, width, height) {
  const context = maskContext();
  context.fillStyle = MASK_PAINT;
  context.fillRect(x, y, width, height);
  setMasked(true);
}

function clearMask() {
  const canvas = $("mask");
  maskContext().clearRect(0, 0, canvas.width, canvas.height);
  setMasked(false);
}

function canvasPoint(canvas, event) {
  // The pointer's place in the canvas's own pixels (the init image's), and the brush radius there.
  const box = canvas.getBoundingClientRect();
  const scale = canvas.width / Math.max(1, box.width);
  return {
    x: (event.clientX - box.left) * scale,
    y: (event.clientY - box.top) * (canvas.height / Math.max(1, box.height)),
    radius: (Number($("mask_brush").value) / 2) * scale,
  };
}

function paintTo(from, to) {
  const context = maskContext();
  context.fillStyle = MASK_PAINT;
  context.strokeStyle = MASK_PAINT;
  context.lineCap = "round";
  context.lineWidth = to.radius * 2;
  if (from) {
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
  }
  context.beginPath(); // a dot too: a tap paints, and a zero-length line would not
  context.arc(to.x, to.y, to.radius, 0, 2 * Math.PI);
  context.fill();
}

function onPointerDown(event) {
  if (!state.init || (event.pointerType === "mouse" && event.button !== 0)) return;
  event.preventDefault();
  const canvas = $("mask");
  try {
    canvas.setPointerCapture(event.pointerId); // the stroke goes on past the canvas's edge
  } catch {
    // not an active pointer (a synthetic event): painting works without the capture
  }
  const point = canvasPoint(canvas, event);
  paintTo(null, point);
  state.strokes.set(event.pointerId, point);
  setMasked(true);
}

function onPointerMove(event) {
  let last = state.strokes.get(event.pointerId);
  if (!last) return;
  const canvas = $("mask");
  const moves = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
  for (const move of moves.length ? moves : [event]) {
    const point = canvasPoint(canvas, move);
    paintTo(last, point);
    last = point;
  }
  state.strokes.set(event.pointerId, last);
}

function onPointerUp(event) {
  state.strokes.delete(event.pointerId);
}

function maskDataUrl() {
  // The mask as A1111 takes it: a PNG of the init image's size, white where painted, black elsewhere.
  const canvas = $("mask");
  const { width, height } = canvas;
  const painted = maskContext().getImageData(0, 0, width, height).data;
  const mask = new ImageData(width, height);
  for (let i = 0; i < painted.length; i += 4) {
    const value = painted[i + 3] >= 128 ? 255 : 0;
    mask.data[i] = value;
    mask.data[i + 1] = value;
    mask.data[i + 2] = value;
    mask.data[i + 3] = 255;
  }
  const out = document.createElement("canvas");
  out.width = width;
  out.height = height;
  out.getContext("2d").putImageData(mask, 0, 0);
  return out.toDataURL("image/png");
}

function wireInitImage() {
  const input = $("init_images");
  input.addEventListener("change", () => setInitImage(input.files[0]));
  const zone = $("init-section");
  zone.addEventListener("dragover", (drag) => {
    if (![...drag.dataTransfer.types].includes("Files")) return;
    drag.preventDefault();
    drag.dataTransfer.dropEffect = "copy";
    $("init-drop").dataset.over = "true";
  });
  zone.addEventListener("dragleave", (drag) => {
    if (!zone.contains(drag.relatedTarget)) delete $("init-drop").dataset.over;
  });
  zone.addEventListener("drop", (drop) => {
    drop.preventDefault();
    delete $("init-drop").dataset.over;
    const file = drop.dataTransfer.files[0];
    if (file) setInitImage(file);
  });
  for (const kind of ["dragover", "drop"]) { // a file dropped beside the zone must not replace the page
    window.addEventListener(kind, (drag) => {
      if (drag.dataTransfer && [...drag.dataTransfer.types].includes("Files")) drag.preventDefault();
    });
  }
  $("init-remove").addEventListener("click", removeInitImage);
  const canvas = $("mask");
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  $("mask_brush").addEventListener("input", () => {
    $("mask_brush_value").textContent = `${$("mask_brush").value} px`;
  });
  $("mask-whole").addEventListener("click", () => maskRect(0, 0, canvas.width, canvas.height));
  $("mask-centre").addEventListener("click", () => {
    clearMask();
    maskRect(canvas.width / 4, canvas.height / 4, canvas.width / 2, canvas.height / 2);
  });
  $("mask-clear").addEventListener("click", clearMask);
  $("inpainting_mask_invert").addEventListener("change", () => setMasked(state.masked));
  $("denoising_strength").addEventListener("input", () => {
    $("denoising_strength_value").textContent = Number($("denoising_strength").value).toFixed(2);
  });
}

// -- Hires fix -----------------------------------------------------------------------------

async function loadUpscalers() {
  // The hires upscalers: A1111's latent modes, then the pool's upscalers; "Latent" when neither answers.
  state.upscalersLoaded = true;
  const names = [DEFAULT_HR_UPSCALER];
  for (const url of ["/sdapi/v1/latent-upscale-modes", "/sdapi/v1/upscalers"]) {
    try {
      for (const entry of await getJson(url)) {
        if (entry && entry.name && entry.name !== "None" && !names.includes(entry.name)) names.push(entry.name);
      }
    } catch {
      // not offered by this gateway: the names so far stay
    }
  }
  const select = $("hr_upscaler");
  const current = select.value || DEFAULT_HR_UPSCALER;
  select.replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
  select.value = names.includes(current) ? current : DEFAULT_HR_UPSCALER;
}

function wireHires() {
  $("enable_hr").addEventListener("change", () => {
    syncModes();
    if ($("enable_hr").checked && !state.upscalersLoaded) loadUpscalers();
  });
  $("hr_scale").addEventListener("input", syncHiresSize);
  $("width").addEventListener("input", syncHiresSize);
  $("height").addEventListener("input", syncHiresSize);
  $("size_preset").addEventListener("change", syncHiresSize);
}

// -- Wiring --------------------------------------------------------------------------------

function syncSizePreset() {
  const value = `${$("width").value}x${$("height").value}`;
  const preset = $("size_preset");
  preset.value = [...preset.options].some((o) => o.value === value) ? value : "custom";
}

function init() {
  $("form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  $("random-seed").addEventListener("click", () => { $("seed").value = "-1"; });
  $("reuse-seed").addEventListener("click", () => {
    if (state.shown && state.shown.seed !== undefined) $("seed").value = String(state.shown.seed);
    $("seed").focus();
  });
  $("api-key-use").addEventListener("click", useKey);
  $("api_key").addEventListener("keydown", (key) => {
    if (key.key === "Enter") {
      key.preventDefault();
      useKey();
    }
  });
  $("refiner_switch_at").addEventListener("input", () => {
    $("refiner_switch_at_value").textContent = Number($("refiner_switch_at").value).toFixed(2);
  });
  $("size_preset").addEventListener("change", () => {
    const [width, height] = $("size_preset").value.split("x");
    if (height) {
      $("width").value = width;
      $("height").value = height;
    }
  });
  $("width").addEventListener("input", syncSizePreset);
  $("height").addEventListener("input", syncSizePreset);
  $("form").addEventListener("keydown", (key) => {
    if (key.key === "Enter" && (key.ctrlKey || key.metaKey)) {
      key.preventDefault();
      $("form").requestSubmit();
    }
  });
  wireInitImage();
  wireHires();
  syncModes();
  refreshPool();
}

init();
