// The big screen: read-only, fed by the chat's WebSocket. Every bit of post data goes in as text.

import {
  LiveConnection,
  alsoLinks,
  avatar,
  clear,
  connectionIndicator,
  duration,
  el,
  formatNumber,
  localTime,
  networkBadge,
  onResize,
  parseTime,
  slugFromPath,
  storedToken,
  timeElement,
} from "./common.js";

const SEL = {
  stage: "#stage",
  hashtags: "#chat-hashtags",
  title: "#chat-title",
  trending: "#trending",
  connection: "#connection",
  question: "#question",
  questionBadge: "#question-badge",
  questionText: "#question-text",
  questionNext: "#question-next",
  elapsed: "#question-elapsed",
  elapsedLabel: "#question-elapsed-label",
  figure: (name) => `[data-figure="${name}"]`,
  figureBox: (name) => `[data-figure-box="${name}"]`,
  chart: "#per-minute",
  pinned: "#pinned",
  wall: "#wall",
  wallPost: "#wall > .post[data-id]",
  questionTopBox: "#question-top-box",
  questionTopTitle: "#question-top-title",
  questionTop: "#question-top",
  topTweetsBox: "#top-tweets-box",
  topTweets: "#top-tweets",
  pollsBox: "#polls-box",
  polls: "#polls",
  side: ".side",
  fitItems: ".side .compact",
};

const FIGURES = ["participants", "original_tweets", "retweets", "replies"];

const WALL = {
  paceMs: 1500, // one new post every 1.5 s when they trickle in…
  fastestMs: 300, // …faster as the backlog grows, never faster than this
  backlogMax: 24, // beyond this, the oldest waiting posts are skipped (they would not be read)
  enterMs: 700, // matches the CSS transition
  leaveMs: 600,
  capTall: 8, // at most this many posts at 1080 px high…
  capShort: 5, // …and at 720 px
};

const WALL_KNOWN = 30; // the server keeps 30 posts on the wall
const TOP = { chat: 3, question: 3 };
const BUMP_MS = 1400;
const QUESTION_SIZES_REM = [2.6, 2.4, 2.2, 2.0, 1.85, 1.7, 1.55, 1.4];
// A chat whose window is this close to now is live: its clock is the wall clock. Otherwise
// (an archive, a replay of an old chat) the clock is the newest collected post's time.
const LIVE_MARGIN_MS = 6 * 3600 * 1000;

const $ = (selector) => document.querySelector(selector);

const state = {
  chat: null,
  figures: null,
  perMinute: [],
  current: null, // current_question from the server
  screen: null,
  trendsNote: "",
  hidden: new Set(), // ids the server says are hidden (if it sends them): kept off the top lists
  pinned: [],
  newestAt: null, // ms, the newest collected post
  override: null, // {number, since}: a question with no known start, first seen then
  figuresShown: false,
};

const wall = {
  known: [], // the posts the server has on the wall, newest first (to refill the bottom)
  refillTimer: null,
  pending: [], // posts waiting to enter, oldest first
  timer: null,
  lastEnter: 0,
};

// ---- the connection -------------------------------------------------------------------------

const slug = slugFromPath();
const params = new URLSearchParams(location.search);
const token = params.get("token") || (slug ? storedToken(slug) : null);
const indicate = connectionIndicator($(SEL.connection));

function showState(stateName, info) {
  indicate(stateName, info);
  // Refused before anything was shown: say why where the question would be.
  if (!state.chat && info?.close?.code === 1008) {
    $(SEL.questionText).textContent = token
      ? `The server refused this screen: ${info.close.reason || "check the chat and the token"}.`
      : `This big screen is not public (${info.close.reason || "a credential is needed"}): ` +
        "open it from the panel, or add ?token=… to its address.";
  }
}

if (!slug) {
  $(SEL.questionText).textContent = "No chat here: open /chats/{slug}/screen.";
} else {
  const connection = new LiveConnection({
    slug,
    token,
    onSnapshot: applySnapshot,
    onUpdate: applyUpdate,
    onState: showState,
  });
  connection.start();
  window.tweetchatScreen = { connection, state }; // for debugging from the console
}

setInterval(tick, 1000);
onResize(() => {
  fitQuestion();
  renderChart();
  fitWall(true);
  fitSide();
});

// ---- messages -------------------------------------------------------------------------------

function applySnapshot(message) {
  state.chat = message.chat || state.chat;
  state.screen = message.screen || null;
  state.pinned = Array.isArray(message.pinned) ? message.pinned : [];
  state.hidden = new Set(Array.isArray(message.hidden) ? message.hidden.map(String) : []);
  noteNewest(message.latest);
  noteNewest(message.wall);
  takeCommon(message);
  renderChat();
  renderAll();
  snapshotWall(Array.isArray(message.wall) ? message.wall : []);
}

function applyUpdate(message) {
  if (message.chat) {
    state.chat = message.chat;
    renderChat();
  }
  if (message.screen) state.screen = message.screen;
  if (Array.isArray(message.hidden)) state.hidden = new Set(message.hidden.map(String));
  noteNewest(message.posts);
  noteNewest(message.wall_add);
  if (Array.isArray(message.wall_remove)) removeFromWall(message.wall_remove.map(String));
  if (Array.isArray(message.pinned)) state.pinned = message.pinned;
  if (Array.isArray(message.retagged)) retag(message.retagged);
  if (Array.isArray(message.also)) updateAlso(message.also);
  takeCommon(message);
  renderAll();
  if (Array.isArray(message.wall_add)) queueForWall(message.wall_add);
}

function takeCommon(message) {
  if (message.figures) state.figures = message.figures;
  if (Array.isArray(message.per_minute)) state.perMinute = message.per_minute;
  if ("current_question" in message) state.current = message.current_question || null;
  if (typeof message.trends_note === "string") state.trendsNote = message.trends_note;
}

function noteNewest(posts) {
  if (!Array.isArray(posts)) return;
  for (const post of posts) {
    const at = parseTime(post?.created_at);
    if (at !== null && (state.newestAt === null || at > state.newestAt)) state.newestAt = at;
  }
}

function renderAll() {
  renderQuestion();
  renderFigures();
  renderTrending();
  renderChart();
  renderPinned();
  renderSide();
  tick();
}

// ---- the chat and its clock -----------------------------------------------------------------

function renderChat() {
  const chat = state.chat;
  if (!chat) return;
  $(SEL.hashtags).textContent = (chat.hashtags || []).join(" ");
  $(SEL.title).textContent = chat.title || "";
  document.title = `${chat.title || chat.slug} · big screen`;
}

function chatNow() {
  const now = Date.now();
  const start = parseTime(state.chat?.start);
  const end = parseTime(state.chat?.end);
  if (start === null || end === null) return now;
  const live = now >= start - LIVE_MARGIN_MS && now <= end + LIVE_MARGIN_MS;
  if (live || state.newestAt === null) return now;
  return state.newestAt;
}

function questions() {
  const list = Array.isArray(state.chat?.questions) ? [...state.chat.questions] : [];
  return list.sort((a, b) => a.number - b.number);
}

/** The question on screen: the host's override, else the server's current question. When the
 * server does not know since when (an override of a question not posted yet), it runs from the
 * moment this page first saw it. */
function currentQuestion() {
  let current = state.current;
  const chosen = state.screen?.current_question;
  if (chosen !== null && chosen !== undefined && (!current || current.number !== Number(chosen))) {
    const number = Number(chosen);
    const planned = questions().find((q) => q.number === number);
    current = { number, text: planned?.text || questionText(number), since: planned?.posted_at || null };
  }
  if (!current) {
    state.override = null;
    return null;
  }
  if (parseTime(current.since) !== null) return current;
  if (!state.override || state.override.number !== current.number) {
    state.override = { number: current.number, since: chatNow() };
  }
  return { ...current, since: new Date(state.override.since).toISOString() };
}

function questionText(number) {
  const figures = (state.figures?.questions || []).find((q) => q.number === number);
  return figures?.text || "";
}

function renderQuestion() {
  const chat = state.chat;
  if (!chat) return;
  const current = currentQuestion();
  const box = $(SEL.question);
  const number = current ? String(current.number) : "";
  box.dataset.number = number;
  $(SEL.questionBadge).textContent = current ? `Q${current.number}` : "—";
  const text = current ? current.text || questionText(current.number) : chat.title || "";
  const textNode = $(SEL.questionText);
  if (textNode.textContent !== text) {
    textNode.textContent = text;
    textNode.dataset.fitted = "";
  }
  renderNext(current);
  fitQuestion();
}

function renderNext(current) {
  const node = clear($(SEL.questionNext));
  const all = questions();
  const next = current ? all.find((q) => q.number > current.number) : all[0];
  if (next) {
    node.append(el("strong", { text: `Next: Q${next.number}` }));
    const when = localTime(next.planned_at);
    if (when) node.append(` · ${when}`);
    if (next.text) node.append(` · ${next.text}`);
  } else if (current) {
    node.append(el("strong", { text: "Last question" }));
    const end = localTime(state.chat?.end);
    const ended = parseTime(state.chat?.end) !== null && chatNow() >= parseTime(state.chat.end);
    if (end) node.append(ended ? ` · the chat ended at ${end}` : ` · the chat ends at ${end}`);
  }
}

/** The largest type size at which the whole question fits its box. */
function fitQuestion() {
  const text = $(SEL.questionText);
  const body = text.parentElement;
  const next = $(SEL.questionNext);
  const key = `${text.textContent}|${body.clientWidth}x${body.clientHeight}`;
  if (text.dataset.fitted === key) return;
  if (getComputedStyle(text).getPropertyValue("--fit").trim() === "none") {
    // One column (screen.css, narrow windows): the box grows with the question, at the style
    // sheet's size.
    text.style.removeProperty("--size");
    text.style.removeProperty("-webkit-line-clamp");
    text.dataset.fitted = key;
    return;
  }
  const gap = parseFloat(getComputedStyle(body).rowGap) || 0;
  const available = body.clientHeight - (next.textContent ? next.offsetHeight + gap : 0);
  text.style.removeProperty("-webkit-line-clamp");
  let lineHeight = 1;
  for (const size of QUESTION_SIZES_REM) {
    text.style.setProperty("--size", `${size}rem`);
    text.style.setProperty("-webkit-line-clamp", "unset");
    lineHeight = parseFloat(getComputedStyle(text).lineHeight) || 1;
    const lines = Math.round(text.scrollHeight / lineHeight);
    if (lines * lineHeight <= available + 0.5) break;
  }
  // Still too long at the smallest size: clamp it to the lines that fit.
  text.style.setProperty("-webkit-line-clamp", String(Math.max(1, Math.floor((available + 0.5) / lineHeight))));
  text.dataset.fitted = key;
}

function tick() {
  const chat = state.chat;
  if (!chat) return;
  const elapsed = $(SEL.elapsed);
  const label = $(SEL.elapsedLabel);
  const now = chatNow();
  const start = parseTime(chat.start);
  const end = parseTime(chat.end);
  const current = currentQuestion();
  const since = parseTime(current?.since);
  if (current && since !== null) {
    const until = end !== null ? Math.min(now, end) : now;
    elapsed.textContent = duration((until - since) / 1000);
    label.textContent = end !== null && now >= end ? "chat ended" : "running";
  } else if (start !== null && now < start - 3600_000) {
    elapsed.textContent = localTime(chat.start);
    label.textContent = "starts at";
  } else if (start !== null && now < start) {
    elapsed.textContent = duration((start - now) / 1000);
    label.textContent = "starts in";
  } else if (end !== null && now >= end) {
    elapsed.textContent = localTime(chat.end);
    label.textContent = "ended at";
  } else if (start !== null) {
    elapsed.textContent = duration((now - start) / 1000);
    label.textContent = "since start";
  }
}

// ---- figures, trending, chart ---------------------------------------------------------------

function renderFigures() {
  const figures = state.figures;
  if (!figures) return;
  for (const name of FIGURES) {
    const node = $(SEL.figure(name));
    const value = Math.max(0, Math.trunc(Number(figures[name]) || 0));
    const before = node.textContent;
    node.textContent = String(value);
    node.style.setProperty("--figure", String(value));
    if (state.figuresShown && before !== String(value)) bump($(SEL.figureBox(name)));
  }
  state.figuresShown = true;
}

function bump(node) {
  if (!node) return;
  clearTimeout(node.bumpTimer);
  node.classList.add("is-bumped");
  node.bumpTimer = setTimeout(() => node.classList.remove("is-bumped"), BUMP_MS);
}

function renderTrending() {
  const node = $(SEL.trending);
  const trending = Array.isArray(state.figures?.trending) ? state.figures.trending : [];
  if (trending.length) {
    const parts = trending.map((t) => {
      const where = t.location ? ` in ${t.location}` : "";
      return `${t.hashtag} #${t.rank}${where}`;
    });
    node.textContent = `Trending: ${parts.join(" · ")}`;
    node.dataset.state = "trending";
    node.hidden = false;
  } else if (state.trendsNote) {
    node.textContent = state.trendsNote;
    node.dataset.state = "note";
    node.hidden = false;
  } else {
    node.textContent = "";
    node.dataset.state = "none";
    node.hidden = true;
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Posts per minute over the chat window, originals under retweets. */
function renderChart() {
  const box = $(SEL.chart);
  const chat = state.chat;
  if (!chat) return;
  const width = box.clientWidth;
  const height = box.clientHeight;
  if (width < 20 || height < 20) return;
  const minute = 60_000;
  let start = parseTime(chat.start);
  let end = parseTime(chat.end);
  const rows = state.perMinute || [];
  const times = rows.map((row) => parseTime(row.minute)).filter((t) => t !== null);
  if (start === null || end === null || end - start > 6 * 3600 * 1000) {
    if (!times.length) return clear(box);
    start = Math.min(...times);
    end = Math.max(...times) + minute;
  }
  start = Math.floor(start / minute) * minute;
  const count = Math.max(1, Math.ceil((end - start) / minute));
  const byMinute = new Map();
  for (const row of rows) {
    const at = parseTime(row.minute);
    if (at === null) continue;
    const index = Math.floor((at - start) / minute);
    if (index < 0 || index >= count) continue;
    const old = byMinute.get(index) || { originals: 0, retweets: 0 };
    old.originals += Number(row.originals) || 0;
    old.retweets += Number(row.retweets) || 0;
    byMinute.set(index, old);
  }
  let peak = 0;
  for (const value of byMinute.values()) peak = Math.max(peak, value.originals + value.retweets);
  const scale = niceCeiling(Math.max(4, peak));
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
  const labelSpace = Math.round(rem * 1.05);
  const top = Math.round(rem * 0.9);
  const plotHeight = Math.max(4, height - labelSpace - top);
  const slot = width / count;
  const barWidth = Math.max(1, slot * 0.72);
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": `Posts per minute, peak ${peak}`,
  });
  const base = top + plotHeight;
  root.append(svg("line", { class: "baseline", x1: 0, x2: width, y1: base + 0.5, y2: base + 0.5 }));
  // Question starts, so a peak can be read against its question.
  for (const q of questions()) {
    const at = parseTime(q.posted_at) ?? parseTime(q.planned_at);
    if (at === null || at < start || at >= end) continue;
    const x = Math.round(((at - start) / minute) * slot) + 0.5;
    root.append(svg("line", { class: "marker", x1: x, x2: x, y1: top - 2, y2: base }));
    root.append(svg("text", { class: "marker-label", x: x + 3, y: top - 3 }, `Q${q.number}`));
  }
  for (const [index, value] of byMinute) {
    const x = index * slot + (slot - barWidth) / 2;
    const hOriginals = (value.originals / scale) * plotHeight;
    const hRetweets = (value.retweets / scale) * plotHeight;
    if (hOriginals > 0) {
      root.append(svg("rect", {
        class: "bar-originals", x: x.toFixed(1), width: barWidth.toFixed(1),
        y: (base - hOriginals).toFixed(1), height: hOriginals.toFixed(1), rx: Math.min(2, barWidth / 3),
      }));
    }
    if (hRetweets > 0) {
      root.append(svg("rect", {
        class: "bar-retweets", x: x.toFixed(1), width: barWidth.toFixed(1),
        y: (base - hOriginals - hRetweets).toFixed(1), height: Math.max(0, hRetweets - 1).toFixed(1),
        rx: Math.min(2, barWidth / 3),
      }));
    }
  }
  const labelY = height - 2;
  root.append(svg("text", { class: "axis-label", x: 0, y: labelY }, localTime(new Date(start).toISOString())));
  root.append(svg("text", { class: "axis-label", x: width, y: labelY, "text-anchor": "end" },
    localTime(new Date(end).toISOString())));
  root.append(svg("text", { class: "axis-label", x: width / 2, y: labelY, "text-anchor": "middle" },
    `peak ${peak} a minute`));
  box.replaceChildren(root);
}

function niceCeiling(value) {
  const steps = [5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200, 300, 400, 500, 750, 1000];
  return steps.find((step) => step >= value) || Math.ceil(value / 500) * 500;
}

// ---- posts ------------------------------------------------------------------------------------

function questionBadge(question) {
  const has = question !== null && question !== undefined;
  return el("span", {
    className: "badge post__question",
    text: has ? `Q${question}` : "",
    hidden: !has,
    dataset: { question: has ? String(question) : "" },
  });
}

function postMeta(post, { time = true, pinned = false } = {}) {
  const meta = el("div", { className: "post__meta" }, [
    pinned ? el("span", { className: "post__pin", text: "Pinned" }) : null,
    el("span", { className: "post__name", text: post.name || post.username || "" }),
    post.username ? el("span", { className: "post__user", text: `@${post.username}` }) : null,
    networkBadge(post),
    questionBadge(post.question),
    post.kind === "retweet" ? el("span", { className: "post__kind", text: "retweet" }) : null,
    post.kind === "reply" ? el("span", { className: "post__kind", text: "reply" }) : null,
  ]);
  if (time) meta.append(timeElement(post.created_at, localTime(post.created_at)));
  return meta;
}

function postCard(post, pinned) {
  return el("div", { className: "post-card" }, [
    avatar(post),
    el("div", { className: "post-card__body" }, [
      postMeta(post, { pinned }),
      el("p", { className: "post__text", text: post.text || "" }),
      alsoLinks(post),
    ]),
  ]);
}

function postNode(post, extraClass = "") {
  const kind = String(post.kind || "");
  const node = el("article", {
    className: `post post--${/^[a-z]+$/.test(kind) ? kind : "other"} ${extraClass}`.trim(),
    dataset: { id: String(post.id), question: post.question == null ? "" : String(post.question) },
  }, [postCard(post, extraClass.includes("post--pinned"))]);
  node.post = post;
  return node;
}

function retag(changes) {
  const byId = new Map(changes.map((c) => [String(c.id), c.question ?? null]));
  for (const node of document.querySelectorAll(".post[data-id], .compact[data-id]")) {
    if (!byId.has(node.dataset.id)) continue;
    const question = byId.get(node.dataset.id);
    node.dataset.question = question == null ? "" : String(question);
    const badge = node.querySelector(".post__question");
    if (badge) badge.replaceWith(questionBadge(question));
  }
  for (const post of wall.pending) if (byId.has(String(post.id))) post.question = byId.get(String(post.id));
}

/** A post's cross-posts changed: its "also on" links, wherever it shows. */
function updateAlso(changes) {
  const byId = new Map(changes.map((c) => [String(c.id), Array.isArray(c.also) ? c.also : []]));
  for (const node of document.querySelectorAll(".post[data-id]")) {
    if (!byId.has(node.dataset.id)) continue;
    const post = { ...(node.post || {}), also: byId.get(node.dataset.id) };
    node.post = post;
    node.querySelector(".post__also")?.remove();
    const links = alsoLinks(post);
    if (links) node.querySelector(".post-card__body")?.append(links);
  }
  for (const post of wall.pending) if (byId.has(String(post.id))) post.also = byId.get(String(post.id));
  state.pinned = state.pinned.map((p) => (byId.has(String(p.id)) ? { ...p, also: byId.get(String(p.id)) } : p));
}

// ---- the wall ----------------------------------------------------------------------------------

function wallCap() {
  return window.innerHeight >= 900 ? WALL.capTall : WALL.capShort;
}

function shownIds() {
  return new Set([...document.querySelectorAll(SEL.wallPost)].map((n) => n.dataset.id));
}

/** First snapshot: fill the wall at once. Later snapshots (after a reconnect): keep what is
 * shown, drop what left, and let newer posts enter at the usual pace. */
function snapshotWall(posts) {
  const box = $(SEL.wall);
  const pinned = pinnedIds();
  const visible = posts.filter((p) => !state.hidden.has(String(p.id)) && !pinned.has(String(p.id)));
  const current = [...box.querySelectorAll(".post[data-id]")];
  wall.pending = [];
  wall.known = visible.slice(0, WALL_KNOWN);
  if (!current.length) {
    clear(box);
    refill({ fade: false });
    return;
  }
  const ids = new Set(visible.map((p) => String(p.id)));
  for (const node of current) if (!ids.has(node.dataset.id)) leave(node);
  const shown = shownIds();
  const newestShown = Math.max(
    ...current.map((n) => parseTime(n.post?.created_at) ?? 0).filter((t) => Number.isFinite(t)),
    0,
  );
  const newer = visible
    .filter((p) => !shown.has(String(p.id)) && (parseTime(p.created_at) ?? 0) >= newestShown)
    .reverse();
  queueForWall(newer);
}

function rememberOnWall(posts) {
  for (const post of posts) {
    const id = String(post?.id ?? "");
    if (!id || wall.known.some((p) => String(p.id) === id)) continue;
    wall.known.unshift(post);
  }
  wall.known.sort((a, b) => (parseTime(b.created_at) ?? 0) - (parseTime(a.created_at) ?? 0));
  wall.known.length = Math.min(wall.known.length, WALL_KNOWN);
}

function queueForWall(posts) {
  rememberOnWall(posts);
  const known = shownIds();
  for (const id of pinnedIds()) known.add(id);
  for (const post of wall.pending) known.add(String(post.id));
  for (const post of posts) {
    const id = String(post?.id ?? "");
    if (!id || known.has(id) || state.hidden.has(id)) continue;
    known.add(id);
    wall.pending.push(post);
  }
  if (wall.pending.length > WALL.backlogMax) wall.pending.splice(0, wall.pending.length - WALL.backlogMax);
  schedule();
}

function pace() {
  const backlog = wall.pending.length;
  if (backlog <= 2) return WALL.paceMs;
  return Math.max(WALL.fastestMs, Math.round((WALL.paceMs * 2) / backlog));
}

function schedule() {
  if (wall.timer || !wall.pending.length) return;
  const wait = Math.max(0, wall.lastEnter + pace() - Date.now());
  wall.timer = setTimeout(() => {
    wall.timer = null;
    const post = wall.pending.shift();
    if (post) {
      enter(post);
      wall.lastEnter = Date.now();
    }
    schedule();
  }, wait);
}

/** A new post slides in at the top; the ones pushed past the bottom fade out. */
function enter(post) {
  const box = $(SEL.wall);
  const node = postNode(post, "is-entering");
  node.style.height = "0px";
  box.prepend(node);
  const target = node.scrollHeight;
  // The posts that will no longer fit once this one is in.
  let offset = target;
  let count = 1;
  const limit = box.clientHeight;
  for (const other of box.querySelectorAll(".post[data-id]")) {
    if (other === node) continue;
    const height = other.offsetHeight;
    count += 1;
    if (offset + height > limit || count > wallCap()) leave(other);
    offset += height;
  }
  requestAnimationFrame(() => {
    requestAnimationFrame(() => {
      node.style.height = `${target}px`;
      node.classList.remove("is-entering");
    });
  });
  setTimeout(() => node.style.removeProperty("height"), WALL.enterMs + 50);
}

/** Take a post off the wall: at once for selectors (its data-id goes), softly for the eye. */
function leave(node, { collapse = false } = {}) {
  if (!node.dataset.id) return;
  node.dataset.leavingId = node.dataset.id;
  delete node.dataset.id;
  if (collapse) {
    node.style.height = `${node.offsetHeight}px`;
    requestAnimationFrame(() => {
      node.style.height = "0px";
      node.classList.add("is-leaving");
    });
  } else {
    node.classList.add("is-leaving");
  }
  setTimeout(() => node.remove(), WALL.leaveMs + 150);
}

/** Posts taken off the screen (hidden, blocked, or the oldest past the server's 30). */
function removeFromWall(ids) {
  const gone = new Set(ids);
  wall.pending = wall.pending.filter((p) => !gone.has(String(p.id)));
  wall.known = wall.known.filter((p) => !gone.has(String(p.id)));
  let removed = false;
  for (const node of document.querySelectorAll(SEL.wallPost)) {
    if (gone.has(node.dataset.id)) {
      leave(node, { collapse: true });
      removed = true;
    }
  }
  if (removed) scheduleRefill();
}

/** Fill the room at the bottom of the wall with the next older posts, if they fit whole. */
function refill({ fade = true } = {}) {
  const box = $(SEL.wall);
  if (box.querySelector(".is-entering, .is-leaving, .post[style*='height']")) {
    scheduleRefill();
    return;
  }
  const nodes = [...box.querySelectorAll(".post[data-id]")];
  const shown = new Set(nodes.map((n) => n.dataset.id));
  const pinned = pinnedIds();
  const waiting = new Set(wall.pending.map((p) => String(p.id)));
  const last = nodes.length ? parseTime(nodes[nodes.length - 1].post?.created_at) ?? Infinity : Infinity;
  let count = nodes.length;
  for (const post of wall.known) {
    const id = String(post.id);
    if (shown.has(id) || pinned.has(id) || waiting.has(id) || state.hidden.has(id)) continue;
    if ((parseTime(post.created_at) ?? 0) > last) continue;
    if (count >= wallCap()) break;
    const node = postNode(post, fade ? "is-fading" : "");
    box.append(node);
    if (!fits(box, node)) {
      node.remove();
      break;
    }
    count += 1;
    if (fade) requestAnimationFrame(() => requestAnimationFrame(() => node.classList.remove("is-fading")));
  }
}

function scheduleRefill() {
  clearTimeout(wall.refillTimer);
  wall.refillTimer = setTimeout(() => refill(), WALL.enterMs + 250);
}

function fits(box, node) {
  const boxRect = box.getBoundingClientRect();
  return node.getBoundingClientRect().bottom <= boxRect.bottom + 1;
}

/** After a resize or a change above the wall: drop what no longer fits. */
function fitWall(immediate = false) {
  const box = $(SEL.wall);
  let count = 0;
  for (const node of box.querySelectorAll(".post[data-id]")) {
    count += 1;
    if (count > wallCap() || !fits(box, node)) {
      if (immediate) node.remove();
      else leave(node);
    }
  }
  scheduleRefill();
}

// ---- pinned, top tweets, polls -----------------------------------------------------------------

function visiblePosts(posts) {
  return (Array.isArray(posts) ? posts : []).filter((p) => p && !state.hidden.has(String(p.id)));
}

function pinnedIds() {
  return new Set(visiblePosts(state.pinned).map((p) => String(p.id)));
}

function renderPinned() {
  const box = $(SEL.pinned);
  const posts = visiblePosts(state.pinned);
  const key = posts.map((p) => `${p.id}:${p.question}`).join(",");
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...posts.map((post) => postNode(post, "post--pinned")));
  box.hidden = posts.length === 0;
  // A pinned post is shown once, pinned: it leaves the wall.
  const pinned = pinnedIds();
  for (const node of document.querySelectorAll(SEL.wallPost)) {
    if (pinned.has(node.dataset.id)) leave(node, { collapse: true });
  }
  wall.pending = wall.pending.filter((p) => !pinned.has(String(p.id)));
  // The wall below just lost (or won) room.
  requestAnimationFrame(() => fitWall());
}

function compactItem(post, rank) {
  return el("li", {
    className: "compact",
    dataset: { id: String(post.id), question: post.question == null ? "" : String(post.question) },
  }, [
    el("span", { className: "compact__rank", text: String(rank) }),
    postMeta(post, { time: false }),
    el("p", { className: "compact__text", text: post.text || "" }),
    el("div", { className: "compact__stats" }, [
      el("span", {}, [el("strong", { text: formatNumber(post.retweets) }), " retweets"]),
      el("span", {}, [el("strong", { text: formatNumber(post.likes) }), " likes"]),
    ]),
  ]);
}

function renderList(list, box, posts) {
  const items = posts.map((post, i) => compactItem(post, i + 1));
  list.replaceChildren(...items);
  box.hidden = items.length === 0;
}

// When the poll and the question's top answers leave no room for the chat's top tweets, the side
// column shows those in turn, a calm swap every ROTATE_MS (the screen has no one to click).
// `?rotate=SECONDS` sets another pace (from 1 to 600 seconds).
const ROTATE_MS =
  1000 * Math.min(600, Math.max(1, Number(new URLSearchParams(location.search).get("rotate")) || 20));
const rotation = { phase: "poll", rotate: false };
setInterval(() => {
  const was = rotation.phase;
  rotation.phase = rotation.rotate && rotation.phase === "poll" ? "top" : "poll";
  if (rotation.phase !== was) renderSide();
}, ROTATE_MS);

function renderSide() {
  const figures = state.figures;
  if (!figures) return;
  const current = currentQuestion();
  const perQuestion = current
    ? (figures.questions || []).find((q) => q.number === current.number)
    : null;
  const questionTop = visiblePosts(perQuestion?.top).slice(0, TOP.question);
  $(SEL.questionTopTitle).textContent = current ? `Top answers · Q${current.number}` : "Top answers";
  renderList($(SEL.questionTop), $(SEL.questionTopBox), questionTop);
  renderList($(SEL.topTweets), $(SEL.topTweetsBox), visiblePosts(figures.top_tweets).slice(0, TOP.chat));
  const polls = Array.isArray(figures.polls) ? figures.polls : [];
  renderPolls(polls);
  if (rotation.phase === "top") {
    // The chat's own top tweets get the column to themselves for a while.
    $(SEL.pollsBox).hidden = true;
    $(SEL.questionTopBox).hidden = true;
  }
  fitSide();
  if (rotation.phase === "poll") {
    rotation.rotate = $(SEL.topTweetsBox).classList.contains("is-empty");
  }
}

function renderPolls(polls) {
  const box = $(SEL.polls);
  const shownPolls = polls.slice(-1); // the latest poll
  const existing = box.querySelector(".poll");
  const poll = shownPolls[0];
  if (!poll) {
    clear(box);
    $(SEL.pollsBox).hidden = true;
    return;
  }
  $(SEL.pollsBox).hidden = false;
  const options = Array.isArray(poll.options) ? poll.options : [];
  const top = Math.max(0, ...options.map((o) => Number(o.votes) || 0));
  // Keep the same nodes while the poll is the same, so the bars glide to their new widths.
  const sameShape = existing && existing.dataset.pollId === String(poll.id) &&
    existing.querySelectorAll(".poll__option").length === options.length;
  const node = sameShape ? existing : el("div", { className: "poll", dataset: { pollId: String(poll.id) } });
  if (!sameShape) {
    for (const option of options) {
      node.append(el("div", { className: "poll__option" }, [
        el("span", { className: "poll__bar" }),
        el("span", { className: "poll__label", text: option.label || "" }),
        el("span", { className: "poll__share" }),
      ]));
    }
    node.append(el("div", { className: "poll__total" }));
    box.replaceChildren(node);
  }
  const rows = node.querySelectorAll(".poll__option");
  options.forEach((option, i) => {
    const row = rows[i];
    const share = Math.max(0, Math.min(1, Number(option.share) || 0));
    const percent = Math.round(share * 100);
    row.querySelector(".poll__label").textContent = option.label || "";
    row.querySelector(".poll__share").textContent = `${percent}%`;
    row.dataset.votes = String(Number(option.votes) || 0);
    row.dataset.share = String(share);
    row.classList.toggle("is-leading", top > 0 && (Number(option.votes) || 0) === top);
    const bar = row.querySelector(".poll__bar");
    if (sameShape) bar.style.width = `${percent}%`;
    else requestAnimationFrame(() => requestAnimationFrame(() => (bar.style.width = `${percent}%`)));
  });
  const total = Number(poll.total) || 0;
  const closed = String(poll.voting_status || "") === "closed";
  node.querySelector(".poll__total").textContent =
    `${formatNumber(total)} ${total === 1 ? "vote" : "votes"}${closed ? " · final results" : " · voting open"}`;
}

/** Show only the side's items that fit whole; the rest wait for room. */
function fitSide() {
  const side = $(SEL.side);
  const items = [...document.querySelectorAll(SEL.fitItems)];
  for (const item of items) item.classList.remove("is-out");
  for (const box of side.querySelectorAll(".panel-box")) box.classList.remove("is-empty");
  const bottom = side.getBoundingClientRect().bottom;
  for (const item of items) {
    if (item.closest("[hidden]")) continue;
    if (item.getBoundingClientRect().bottom > bottom + 1) item.classList.add("is-out");
  }
  for (const box of side.querySelectorAll(".panel-box")) {
    const list = box.querySelector(".compact-list");
    if (list && list.children.length && !list.querySelector(".compact:not(.is-out)")) {
      box.classList.add("is-empty");
    }
  }
}
