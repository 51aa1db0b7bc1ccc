// Shared by every page: the /v1 client (with the bearer token when the server asks for one), the page
// frame, charts (Vega-Lite through vega-embed, rendered as SVG) with their numbers as CSV / JSON.

const TOKEN_KEY = "fsgen.api_token";
let configPromise = null;
let openapiPromise = null;

/** The dashboard's config (whether a token is needed, each method's own settings), fetched once. */
export function config() {
  configPromise ??= fetch("/dashboard/config.json").then((r) => r.json());
  return configPromise;
}

/** Ask for the bearer token in a dialog; resolves with what the user typed. */
function askToken(message) {
  return new Promise((resolve) => {
    const dlg = document.createElement("dialog");
    dlg.id = "token-dialog";
    dlg.innerHTML = `<form method="dialog"><h2>API token</h2>
      <p class="muted">${escapeHtml(message)}</p>
      <label>Token <input type="password" name="token" autocomplete="current-password" required></label>
      <button type="submit">Use this token</button></form>`;
    document.body.append(dlg);
    dlg.addEventListener("cancel", (ev) => ev.preventDefault());
    dlg.querySelector("form").addEventListener("submit", () => {
      const token = dlg.querySelector("input").value.trim();
      dlg.remove();
      resolve(token);
    });
    dlg.showModal();
    dlg.querySelector("input").focus();
  });
}

let tokenPromise = null;

/** The stored token, asked for once per browser when the server requires one. */
async function token(force = false) {
  const cfg = await config();
  if (!cfg.token_required) return null;
  if (force) {
    localStorage.removeItem(TOKEN_KEY);
    tokenPromise = null;
  }
  const stored = localStorage.getItem(TOKEN_KEY);
  if (stored) return stored;
  tokenPromise ??= askToken(
    force ? "That token was refused; enter the server's FSGEN_API_TOKEN." : "This server needs its FSGEN_API_TOKEN."
  ).then((t) => {
    localStorage.setItem(TOKEN_KEY, t);
    tokenPromise = null;
    return t;
  });
  return tokenPromise;
}

/** Build a /v1 URL from a path and a params object (arrays repeat the key; null/undefined/"" drop out). */
export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const item of Array.isArray(v) ? v : [v]) {
      if (item !== null && item !== undefined && item !== "") q.append(k, String(item));
    }
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** GET a /v1 route as JSON; a refused token asks again once; errors carry the API's message. */
export async function api(path, params = {}) {
  const target = url(path, params);
  for (let attempt = 0; attempt < 2; attempt++) {
    const t = await token(attempt > 0);
    const r = await fetch(target, { headers: t ? { Authorization: `Bearer ${t}` } : {} });
    if (r.status === 401 && attempt === 0 && (await config()).token_required) continue;
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const msg = body?.error?.message ?? `${r.status} ${r.statusText}`;
      throw new Error(`${target}: ${msg}`);
    }
    return body;
  }
  throw new Error(`${target}: the token was refused`);
}

/** Every page of a cursor-paginated list route, up to `max` rows. */
export async function apiAll(path, params = {}, max = 5000) {
  const rows = [];
  let cursor = null;
  do {
    const page = await api(path, { ...params, cursor });
    rows.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor && rows.length < max);
  return rows;
}

/** The server's GET routes and the query parameters each accepts, from its OpenAPI document. */
export async function servedRoutes() {
  openapiPromise ??= fetch("/openapi.json")
    .then((r) => (r.ok ? r.json() : { paths: {} }))
    .then((doc) => {
      const routes = new Map();
      for (const [path, ops] of Object.entries(doc.paths ?? {})) {
        const params = (ops.get?.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name);
        routes.set(path, new Set(params));
      }
      return routes;
    });
  return openapiPromise;
}

/** `api`, sending only the parameters the route accepts (an older server refuses unknown ones). */
export async function apiKnown(path, params = {}) {
  const routes = await servedRoutes();
  const pattern = (p) => new RegExp(`^${p.replace(/\{[^}]+\}/g, "[^/]+")}$`);
  const accepted = [...routes.entries()].find(([p]) => pattern(p).test(path));
  const known = accepted ? accepted[1] : new Set();
  const kept = Object.fromEntries(Object.entries(params).filter(([k]) => known.has(k)));
  return api(path, kept);
}

export function escapeHtml(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** Number formatting for tables: `digits` decimals (0: a whole number with separators), "–" for missing. */
export function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  return digits === 0 ? Math.round(x).toLocaleString("en") : x.toFixed(digits);
}

/** A setting's value as written: whole numbers plain, others with up to 4 decimals. */
export function plain(x) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return typeof x === "object" ? JSON.stringify(x) : String(x);
  return Number.isInteger(x) ? String(x) : String(Number(x.toFixed(4)));
}

/** "zoo:zoo-l / zoo:zoo-xs" → "zoo-l / zoo-xs". */
export function shortModel(name) {
  return String(name ?? "").replace(/^zoo:/, "").split("/").slice(-1)[0];
}

export function pairLabel(llm, slm) {
  return `${shortModel(llm)} / ${shortModel(slm)}`;
}

/** Header, navigation and the page's <main>. */
export function frame(active, title) {
  document.title = `${title} · fsgen`;
  const header = document.createElement("header");
  header.className = "top";
  const links = [["/", "Overview"], ["/runs", "Runs"], ["/compare", "Compare"]]
    .map(([href, label]) => `<a href="${href}"${label === active ? ' aria-current="page"' : ""}>${label}</a>`)
    .join("");
  header.innerHTML = `<span class="brand">fsgen</span><nav aria-label="main">${links}</nav>
    <a href="/docs" style="color:#fff">API</a>`;
  document.body.prepend(header);
  return document.querySelector("main");
}

/** A card with a title, a note, a chart slot and CSV / JSON buttons for the chart's numbers. */
export function card(parent, { id, title, note = "", wide = false }) {
  const el = document.createElement("section");
  el.className = `card${wide ? " wide" : ""}`;
  el.id = id;
  el.setAttribute("aria-labelledby", `${id}-title`);
  el.innerHTML = `<header><h2 id="${id}-title">${escapeHtml(title)}</h2>
    <span class="downloads" hidden><button type="button" data-fmt="csv">CSV</button>
    <button type="button" data-fmt="json">JSON</button></span></header>
    <p class="note">${escapeHtml(note)}</p><div class="chart" role="img" aria-label="${escapeHtml(title)}"></div>
    <div class="detail table-wrap"></div>`;
  parent.append(el);
  return el;
}

function toCsv(rows) {
  if (!rows.length) return "";
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v) => {
    const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [cols.join(","), ...rows.map((r) => cols.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
}

function download(name, text, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

/** Wire a card's buttons to download `rows` (the chart's numbers) as `<name>.csv` / `<name>.json`. */
export function downloads(cardEl, name, rows) {
  const box = cardEl.querySelector(".downloads");
  box.hidden = !rows.length;
  box.onclick = (ev) => {
    const fmtName = ev.target?.dataset?.fmt;
    if (fmtName === "csv") download(`${name}.csv`, toCsv(rows), "text/csv");
    if (fmtName === "json") download(`${name}.json`, JSON.stringify(rows, null, 2), "application/json");
  };
}

// Distinct colours: Tableau 10 while it suffices, then 20 (category20's hues, darker and lighter), then
// evenly spaced hues: no two series of a chart ever share a colour.
const TABLEAU10 = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"];
const CATEGORY20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd", "#c5b0d5",
  "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"];

/** `n` colours, all different. */
export function palette(n) {
  if (n <= TABLEAU10.length) return TABLEAU10.slice(0, n);
  if (n <= CATEGORY20.length) return CATEGORY20.slice(0, n);
  return Array.from({ length: n }, (_, i) => `hsl(${Math.round((360 * i) / n)}, ${i % 2 ? 55 : 75}%, ${i % 2 ? 62 : 42}%)`);
}

/** A nominal colour encoding of `field` with one colour of its own for each value the rows have. */
export function seriesColor(rows, field, title, extra = {}) {
  const values = [...new Set(rows.map((r) => r[field]).filter((v) => v !== undefined && v !== null))].sort();
  return { field, type: "nominal", title, scale: { domain: values, range: palette(values.length) }, ...extra };
}

/** An HTML table of `rows`: `cols` are [key, header, numeric digits (or false)]. */
export function htmlTable(cols, rows) {
  const head = cols.map(([, h, d]) => `<th scope="col"${d !== false ? ' class="num"' : ""}>${escapeHtml(h)}</th>`).join("");
  const cell = (r, [k, , d]) => `<td${d !== false ? ' class="num"' : ""}>${escapeHtml(d !== false ? fmt(r[k], d) : plain(r[k]))}</td>`;
  const body = rows.map((r) => `<tr>${cols.map((c) => cell(r, c)).join("")}</tr>`).join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

const NARROW = 600; // a slot narrower than this (a phone) stacks a faceted chart's panels in one column

/** A faceted spec with its panels one under the other: one panel label joins the row's and column's. */
function stacked(spec) {
  const fields = [spec.facet.row?.field, spec.facet.column?.field].filter(Boolean);
  const values = (spec.data?.values ?? []).map((r) => ({ ...r, panel: fields.map((f) => r[f]).join(" · ") }));
  const header = { labelAngle: 0, labelOrient: "top", labelAnchor: "start" };
  return { ...spec, data: { values }, facet: { row: { field: "panel", type: "nominal", title: null, header } } };
}

/** The width of one panel of a faceted spec: the slot's width shared by its columns. */
function panelWidth(slot, spec) {
  const field = spec.facet?.column?.field;
  const columns = field ? new Set((spec.data?.values ?? []).map((r) => r[field])).size : 1;
  const axis = 70 + (spec.facet?.row?.header?.labelOrient === "left" ? 60 : 0); // y axis, title, row labels
  return Math.max(140, Math.floor((slot.clientWidth - axis - 20 * columns) / Math.max(1, columns)));
}

/** Render a Vega-Lite spec as SVG into the card's chart slot; the card's downloads get `rows`. A faceted
 * spec (`facet.column`) shares the slot's width between its panels. */
export async function chart(cardEl, name, spec, rows, emptyText = "No data for these filters.") {
  const slot = cardEl.querySelector(".chart");
  downloads(cardEl, name, rows);
  if (!rows.length) {
    slot.innerHTML = `<div class="empty">${escapeHtml(emptyText)}</div>`;
    slot.dataset.state = "empty";
    return null;
  }
  const faceted = Boolean(spec.facet);
  const size = faceted ? {} : { width: "container", autosize: { type: "fit-x", contains: "padding" } };
  if (faceted && slot.clientWidth < NARROW) spec = stacked(spec);
  if (faceted) spec = { ...spec, spec: { ...spec.spec, width: panelWidth(slot, spec) } };
  const full = {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    ...size,
    config: {
      font: "system-ui, sans-serif",
      axis: { labelLimit: 160 },
      axisBand: { labelAngle: slot.clientWidth < 520 ? -35 : 0 }, // long pair names turn on a phone
      legend: { orient: "bottom", columns: slot.clientWidth < 520 ? 1 : slot.clientWidth < 900 ? 2 : 4, labelLimit: 260, symbolOpacity: 1 },
      header: { labelFontSize: 12, labelFontWeight: "bold" },
    },
    ...spec,
  };
  slot.innerHTML = "";
  const result = await vegaEmbed(slot, full, { renderer: "svg", actions: false });
  slot.dataset.state = "rendered";
  return result.view;
}

/** Show an error in a card (the message the API gave). */
export function fail(cardEl, err) {
  const slot = cardEl.querySelector(".chart") ?? cardEl;
  slot.innerHTML = `<div class="error" role="alert">${escapeHtml(err.message ?? err)}</div>`;
  slot.dataset.state = "error";
  console.warn(err);
}

export function statusBadge(status) {
  return `<span class="status status-${escapeHtml(status)}">${escapeHtml(status)}</span>`;
}
