// Shared by the pages: the live connection to /ws/chats/{slug}, the HTTP API with a stored
// token, and DOM helpers that only ever put post data into the page as text.

export const WS = {
  pingEvery: 20_000, // ms, live-updates.md: {"type": "ping"} keeps proxies from closing us
  silentFor: 50_000, // ms without any message (not even a pong): the socket is dead, reconnect
  backoffFirst: 500, // ms, doubling on each failed attempt…
  backoffMax: 10_000, // …up to this
};

export const STATES = {
  connecting: "connecting",
  connected: "connected",
  reconnecting: "reconnecting",
};

export const EVENTS = {
  // Fired on window with detail {state, attempt, retryIn}: tests and pages can listen.
  connection: "tweetchat:connection",
};

const USERNAME_RE = /^[A-Za-z0-9_]{1,50}$/;
const POST_ID_RE = /^[0-9]{1,30}$/;
const TOKEN_KEY = (slug) => `tweetchat.token.${slug}`;

// ---- the page's chat ----------------------------------------------------------------------

/** The chat slug from /chats/{slug}/screen or /chats/{slug}/panel. */
export function slugFromPath(pathname = location.pathname) {
  const match = pathname.match(/^\/chats\/([^/]+)\/(?:screen|panel)\/?$/);
  return match ? decodeURIComponent(match[1]) : null;
}

export function storedToken(slug) {
  try {
    return localStorage.getItem(TOKEN_KEY(slug)) || null;
  } catch {
    return null; // storage disabled: sign in again each time
  }
}

export function storeToken(slug, token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY(slug), token);
    else localStorage.removeItem(TOKEN_KEY(slug));
  } catch {
    /* storage disabled */
  }
}

// ---- DOM, text only -----------------------------------------------------------------------

/**
 * Create an element. `options.text` goes in as textContent; `attrs` through setAttribute (never
 * pass post data as an href: use postUrl); `dataset` as data-* attributes.
 */
export function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  const { className, text, attrs, dataset, title, hidden } = options;
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (title) node.title = String(title);
  if (hidden) node.hidden = true;
  if (attrs) for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (dataset) for (const [name, value] of Object.entries(dataset)) node.dataset[name] = value;
  for (const child of children) if (child) node.append(child);
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

// The networks a post can come from, and how the pages name them.
export const NETWORKS = { x: "X", mastodon: "Mastodon", bluesky: "Bluesky" };

/** A post's network: the server's `network`, else read off its id as the server does (digits:
 * X, an https:// uri: Mastodon, an at:// uri: Bluesky). */
export function postNetwork(post) {
  const network = String(post?.network ?? "");
  if (Object.hasOwn(NETWORKS, network)) return network;
  const id = String(post?.id ?? "");
  if (id.startsWith("at://")) return "bluesky";
  if (/^https?:\/\//.test(id)) return "mastodon";
  return POST_ID_RE.test(id) ? "x" : "";
}

export function networkName(network) {
  return Object.hasOwn(NETWORKS, network) ? NETWORKS[network] : "";
}

/** A small badge naming the post's network in words (the colour only repeats it). */
export function networkBadge(post) {
  const network = postNetwork(post);
  if (!network) return null;
  return el("span", {
    className: `network network--${network}`,
    text: NETWORKS[network],
    title: `Posted on ${NETWORKS[network]}`,
    dataset: { network },
  });
}

/** `value` when it is an absolute http(s) URL, else null: nothing else may become a link. */
export function webUrl(value) {
  if (typeof value !== "string" || !value || value.length > 2048 || /[\s"'<>\\`]/.test(value)) return null;
  let url;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if ((url.protocol !== "https:" && url.protocol !== "http:") || !url.hostname) return null;
  if (url.username || url.password) return null;
  return url.href;
}

/**
 * A post's page on its own site: the server's `url` (X, the Mastodon status's page, bsky.app)
 * when it is an http(s) URL; else, for an X post, one built from its id (digits only) and a
 * validated username.
 */
export function postUrl(post) {
  const given = webUrl(post?.url);
  if (given) return given;
  const id = String(post?.id ?? "");
  if (postNetwork(post) !== "x" || !POST_ID_RE.test(id)) return null;
  const user = String(post?.username ?? "");
  return USERNAME_RE.test(user)
    ? `https://x.com/${user}/status/${id}`
    : `https://x.com/i/web/status/${id}`;
}

export function validUsername(name) {
  return USERNAME_RE.test(String(name ?? ""));
}

/** A link that opens a post on its own site in a new tab, or null when there is none. */
export function postLink(post, label) {
  const href = postUrl(post);
  if (!href) return null;
  const name = networkName(postNetwork(post));
  return el("a", {
    className: "post__link",
    text: label || (name ? `open on ${name}` : "open the post"),
    attrs: { href, target: "_blank", rel: "noopener noreferrer" },
  });
}

/**
 * "also on Bluesky": a cross-post's copies on other networks (the post's `also`), each a link to
 * its own site when it has a safe one; null when the post has none.
 */
export function alsoLinks(post) {
  const also = Array.isArray(post?.also) ? post.also : [];
  const parts = [];
  for (const copy of also) {
    const network = postNetwork(copy);
    if (!network) continue;
    const href = postUrl(copy);
    if (parts.length) parts.push(", ");
    parts.push(href
      ? el("a", {
        className: "post__also-link",
        text: NETWORKS[network],
        dataset: { network },
        attrs: { href, target: "_blank", rel: "noopener noreferrer" },
      })
      : el("span", { className: "post__also-link", text: NETWORKS[network], dataset: { network } }));
  }
  if (!parts.length) return null;
  return el("span", { className: "post__also", title: "The same post on other networks: shown and counted once" }, ["also on ", ...parts]);
}

/** A coloured initial for an account: no images are loaded from anywhere. */
export function avatar(post) {
  const name = String(post?.name || post?.username || "?");
  const initial = Array.from(name.trim())[0] || "?";
  const hue = hash(String(post?.username || name)) % 360;
  const node = el("span", { className: "avatar", text: initial.toUpperCase(), attrs: { "aria-hidden": "true" } });
  node.style.setProperty("--avatar-hue", String(hue));
  return node;
}

function hash(text) {
  let value = 0;
  for (let i = 0; i < text.length; i += 1) value = (value * 31 + text.charCodeAt(i)) >>> 0;
  return value;
}

// ---- time -----------------------------------------------------------------------------------

const hhmm = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const hhmmss = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dayAndTime = new Intl.DateTimeFormat(undefined, {
  weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
});

export function parseTime(value) {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

/** Local HH:MM of an ISO time, or "" when there is none. */
export function localTime(value) {
  const ms = parseTime(value);
  return ms === null ? "" : hhmm.format(ms);
}

export function localTimeSeconds(value) {
  const ms = parseTime(value);
  return ms === null ? "" : hhmmss.format(ms);
}

export function localDayTime(value) {
  const ms = parseTime(value);
  return ms === null ? "" : dayAndTime.format(ms);
}

/** 754 s → "12:34"; an hour or more → "1:02:03". */
export function duration(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}

export function timeElement(value, text) {
  const node = el("time", { className: "post__time", text });
  if (value) node.dateTime = String(value);
  return node;
}

const numbers = new Intl.NumberFormat();
export function formatNumber(value) {
  return numbers.format(Number(value) || 0);
}

// ---- the HTTP API ---------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the API; resolve with its JSON, or reject with an ApiError carrying error.message. */
export async function api(path, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached; check the connection.");
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    throw new ApiError(response.status, errorCode(data), errorMessage(response, data));
  }
  return data;
}

function errorCode(data) {
  return data?.error?.code ? String(data.error.code) : "http";
}

function errorMessage(response, data) {
  if (data?.error?.message) return String(data.error.message);
  // FastAPI's own validation errors: {"detail": [{"loc": [...], "msg": "..."}]} or a string.
  const detail = data?.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail
      .map((item) => {
        const where = Array.isArray(item?.loc) ? item.loc.filter((p) => p !== "body").join(".") : "";
        return where ? `${where}: ${item?.msg ?? "invalid"}` : String(item?.msg ?? "invalid");
      })
      .join("; ");
  }
  return `${response.status} ${response.statusText || "error"}`;
}

export const chatApi = (slug) => `/api/chats/${encodeURIComponent(slug)}`;

// ---- the live connection --------------------------------------------------------------------

// What an update patches rather than resends (app/live/runtime.py `_state`).
const STATE_KEYS = [
  "figures",
  "figures_all",
  "per_minute",
  "current_question",
  "sources",
  "spend",
  "trends_note",
];

/**
 * `old` with a patch of app/live/delta.py applied: `{"=": value}` replaces, `{"{}": {key: patch}}`
 * patches an object's keys, `{"[]": {index: patch}}` a list's items. Neither is modified.
 */
export function applyPatch(old, patch) {
  if (!patch || typeof patch !== "object") throw new Error("not a patch");
  if ("=" in patch) return patch["="];
  if ("{}" in patch) {
    if (!old || typeof old !== "object" || Array.isArray(old)) throw new Error("not an object");
    const merged = { ...old };
    for (const [key, part] of Object.entries(patch["{}"])) merged[key] = applyPatch(old[key], part);
    return merged;
  }
  if ("[]" in patch) {
    if (!Array.isArray(old)) throw new Error("not a list");
    const items = [...old];
    for (const [index, part] of Object.entries(patch["[]"])) {
      items[Number(index)] = applyPatch(old[Number(index)], part);
    }
    return items;
  }
  throw new Error("not a patch");
}

/**
 * The chat's WebSocket: applies the snapshot, then each update in order. A gap in `seq`, a close
 * or a silent socket means reconnecting (0.5 s doubling to 10 s) and starting again from a fresh
 * snapshot. `onState(state, info)` hears "connecting" | "connected" | "reconnecting".
 */
export class LiveConnection {
  constructor({ slug, token = null, onSnapshot, onUpdate, onState }) {
    this.slug = slug;
    this.token = token;
    this.onSnapshot = onSnapshot;
    this.onUpdate = onUpdate;
    this.onState = onState || (() => {});
    this.socket = null;
    this.seq = null;
    this.figureState = {};
    this.attempt = 0;
    this.state = null;
    this.closeInfo = null;
    this.timers = { ping: null, retry: null, watchdog: null };
    this.lastMessageAt = 0;
    this.stopped = false;
    this.setState(STATES.connecting);
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
    return `${scheme}//${location.host}/ws/chats/${encodeURIComponent(this.slug)}${query}`;
  }

  start() {
    this.stopped = false;
    this.open();
    return this;
  }

  stop() {
    this.stopped = true;
    this.clearTimers();
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, "page closed");
    }
  }

  /** Use another token (sign in or out) and start again from a fresh snapshot. */
  setToken(token) {
    this.token = token;
    this.restart("token changed");
  }

  open() {
    this.clearTimers();
    this.seq = null;
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.lastMessageAt = Date.now();
      this.timers.ping = setInterval(() => this.send({ type: "ping" }), WS.pingEvery);
      this.timers.watchdog = setInterval(() => {
        if (Date.now() - this.lastMessageAt > WS.silentFor) this.restart("no message for too long");
      }, 5_000);
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      this.lastMessageAt = Date.now();
      this.receive(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.closeInfo = { code: event.code, reason: event.reason };
      this.scheduleRetry();
    });
    // "error" is always followed by "close": the retry is scheduled there.
  }

  receive(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return; // not ours to crash on
    }
    if (!message || typeof message !== "object") return;
    if (message.type === "snapshot") {
      this.seq = Number(message.seq);
      this.figureState = Object.fromEntries(
        STATE_KEYS.filter((key) => key in message).map((key) => [key, message[key]]),
      );
      this.attempt = 0;
      this.closeInfo = null;
      this.onSnapshot(message);
      this.setState(STATES.connected);
      return;
    }
    if (message.type !== "update" || this.seq === null) return;
    const seq = Number(message.seq);
    // Published between our subscription and the snapshot: already in the snapshot.
    if (seq <= this.seq) return;
    if (seq !== this.seq + 1) {
      this.restart(`missed updates ${this.seq + 1}…${seq - 1}`);
      return;
    }
    this.seq = seq;
    // The figures come as patches of what the last message had (app/live/delta.py): the pages
    // see each changed key whole, as in the snapshot.
    try {
      for (const [key, patch] of Object.entries(message.state || {})) {
        this.figureState[key] = applyPatch(this.figureState[key], patch);
        message[key] = this.figureState[key];
      }
    } catch {
      this.restart("could not apply an update");
      return;
    }
    delete message.state;
    this.onUpdate(message);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  restart(reason) {
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, reason.slice(0, 100));
    }
    this.closeInfo = { code: 1000, reason };
    this.scheduleRetry();
  }

  scheduleRetry() {
    this.clearTimers();
    if (this.stopped) return;
    const delay = Math.min(WS.backoffMax, WS.backoffFirst * 2 ** this.attempt);
    this.attempt += 1;
    this.setState(STATES.reconnecting, { retryIn: delay });
    this.timers.retry = setTimeout(() => this.open(), delay);
  }

  clearTimers() {
    clearInterval(this.timers.ping);
    clearInterval(this.timers.watchdog);
    clearTimeout(this.timers.retry);
    this.timers = { ping: null, retry: null, watchdog: null };
  }

  setState(state, extra = {}) {
    this.state = state;
    const info = { state, attempt: this.attempt, close: this.closeInfo, ...extra };
    this.onState(state, info);
    window.dispatchEvent(new CustomEvent(EVENTS.connection, { detail: info }));
  }
}

/** Keep a quiet indicator element (`data-state`, a short label) in step with a connection. */
export function connectionIndicator(node, labels = {}) {
  const text = {
    connecting: "connecting…",
    connected: "live",
    reconnecting: "reconnecting…",
    ...labels,
  };
  return (state, info = {}) => {
    if (!node) return;
    node.dataset.state = state;
    const label = node.querySelector(".connection__label") || node;
    label.textContent = text[state] || state;
    const code = info.close?.code;
    node.title =
      state === "reconnecting" && code === 1008
        ? "The server refused the connection (unknown chat, or a credential is needed)."
        : state === "reconnecting" && info.close?.reason
          ? `Reconnecting: ${info.close.reason}`
          : "";
  };
}

/** Run `fn` now and again whenever the window's size changes (coalesced to one frame). */
export function onResize(fn) {
  let pending = false;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  });
}
