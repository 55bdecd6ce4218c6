// The panel: sign in with a token, work the unanswered queue, run the big screen. Post data goes
// into the page as text only; links to posts are built from their ids (common.js postLink).

import {
  ApiError,
  LiveConnection,
  NETWORKS,
  api,
  alsoLinks,
  avatar,
  chatApi,
  clear,
  connectionIndicator,
  el,
  formatNumber,
  localTime,
  localTimeSeconds,
  networkBadge,
  parseTime,
  postLink,
  postNetwork,
  slugFromPath,
  storeToken,
  storedToken,
  timeElement,
} from "./common.js";

const SEL = {
  chatTitle: "#chat-title",
  chatHashtags: "#chat-hashtags",
  screenLink: "#screen-link",
  exportLinks: "#exports [data-export]",
  reportLink: "#report-link",
  connection: "#connection",
  who: "#who",
  whoName: "#who-name",
  whoRole: "#who-role",
  signout: "#signout",
  signin: "#signin",
  signinForm: "#signin-form",
  signinChat: "#signin-chat",
  tokenInput: "#token-input",
  signinError: "#signin-error",
  signinSubmit: "#signin-submit",
  workspace: "#workspace",
  tabs: ".tabs [data-tab]",
  tab: (name) => `.tabs [data-tab="${name}"]`,
  tabPanel: (name) => `[data-panel="${name}"]`,
  queueCount: "#queue-count",
  approvalTab: "#tab-approval",
  approvalCount: "#approval-count",
  queueFilters: "#queue-filters",
  networkFilters: "#network-filters",
  queueList: "#queue-list",
  queueEmpty: "#queue-empty",
  approvalList: "#approval-list",
  approvalEmpty: "#approval-empty",
  searchForm: "#search-form",
  searchQ: "#search-q",
  searchAuthor: "#search-author",
  searchQuestion: "#search-question",
  searchNetwork: "#search-network",
  searchSummary: "#search-summary",
  searchList: "#search-list",
  currentQuestion: "#current-question",
  modeRadios: '#screen-mode input[name="mode"]',
  modeRadio: (mode) => `#screen-mode input[name="mode"][value="${mode}"]`,
  delaySeconds: "#delay-seconds",
  screenPublic: "#screen-public",
  blockedWords: "#blocked-words",
  blockedAccounts: "#blocked-accounts",
  blocksSave: "#blocks-save",
  questionsRows: "#questions-rows",
  questionsAdd: "#questions-add",
  questionsSave: "#questions-save",
  sources: "#sources",
  spendUsd: "#spend-usd",
  spendDetail: "#spend-detail",
  message: "#panel-message",
  lists: "#queue-list, #approval-list, #search-list",
};

// The actions a post's buttons carry in data-action.
const ACTIONS = {
  claim: "claim",
  release: "release",
  handled: "handled",
  hide: "hide",
  pin: "pin",
  retag: "retag",
  approve: "approve",
};

const RETAG_AUTO = "auto"; // back to the automatic tag (DELETE)
const RETAG_NONE = "none"; // no question (manual)
const MESSAGE_MS = 6000;
const APPROVAL_MAX = 50;
const SEARCH_LIMIT = 50;

const $ = (selector) => document.querySelector(selector);

const slug = slugFromPath();
const base = slug ? chatApi(slug) : "";

const state = {
  token: null,
  me: null, // {name, role}
  chat: null,
  screen: null,
  queue: new Map(), // id → panel post
  filter: "all",
  network: "all", // the queue's network filter: "all" or a key of NETWORKS
  tab: "queue",
  wall: new Set(), // ids on the big screen now
  recent: new Map(), // id → post, recently collected (for the approval list)
  approved: new Set(),
  marks: new Map(), // id → flags learnt from action answers (for search results)
  search: null, // {total, posts}
  sources: {},
  spend: null,
  dirty: { blocks: false, questions: false, delay: false },
};

let connection = null;
const showState = connectionIndicator($(SEL.connection));

// ---- start --------------------------------------------------------------------------------------

if (!slug) {
  showSignin("No chat here: open /chats/{slug}/panel.");
  $(SEL.signinSubmit).disabled = true;
} else {
  $(SEL.screenLink).href = `/chats/${encodeURIComponent(slug)}/screen`;
  for (const link of document.querySelectorAll(SEL.exportLinks)) {
    link.href = `/api/chats/${encodeURIComponent(slug)}/export.${link.dataset.export}`;
  }
  $(SEL.reportLink).href = `/chats/${encodeURIComponent(slug)}/report`;
  bindEvents();
  loadChat();
  const token = storedToken(slug);
  if (token) signIn(token, { quiet: true });
  else showSignin();
  setInterval(renderSources, 1000); // retry countdowns
}

async function loadChat() {
  try {
    const chat = await api(base);
    if (!state.chat) setChat(chat);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      showSignin(error.message);
      $(SEL.signinSubmit).disabled = true;
    }
  }
}

// ---- signing in -----------------------------------------------------------------------------------

function showSignin(message = "") {
  $(SEL.signin).hidden = false;
  $(SEL.workspace).hidden = true;
  $(SEL.who).hidden = true;
  // Nothing connects before signing in: no "connecting…" beside the form.
  $(SEL.connection).hidden = true;
  const error = $(SEL.signinError);
  error.textContent = message;
  error.hidden = !message;
  $(SEL.tokenInput).focus();
}

async function signIn(token, { quiet = false } = {}) {
  const submit = $(SEL.signinSubmit);
  submit.disabled = true;
  try {
    const me = await api(`${base}/me`, { token });
    state.token = token;
    state.me = me;
    storeToken(slug, token);
    $(SEL.whoName).textContent = me?.name || "";
    $(SEL.whoRole).textContent = me?.role || "";
    $(SEL.who).hidden = false;
    $(SEL.signin).hidden = true;
    $(SEL.workspace).hidden = false;
    $(SEL.tokenInput).value = "";
    $(SEL.connection).hidden = false;
    connect();
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) storeToken(slug, null);
    showSignin(quiet && error.status === 401 ? `Sign in again: ${error.message}` : error.message);
  } finally {
    submit.disabled = false;
  }
}

function signOut() {
  storeToken(slug, null);
  state.token = null;
  state.me = null;
  if (connection) connection.stop();
  connection = null;
  state.queue.clear();
  state.search = null;
  showState("connecting");
  showSignin();
}

function connect() {
  if (connection) {
    connection.setToken(state.token);
    return;
  }
  connection = new LiveConnection({
    slug,
    token: state.token,
    onSnapshot: applySnapshot,
    onUpdate: applyUpdate,
    onState: showState,
  }).start();
  window.tweetchatPanel = { connection, state }; // for debugging from the console
}

// ---- messages -------------------------------------------------------------------------------------

function applySnapshot(message) {
  setChat(message.chat);
  state.queue = new Map((message.queue || []).map((p) => [String(p.id), p]));
  state.wall = new Set((message.wall || []).map((p) => String(p.id)));
  state.recent = new Map();
  remember(message.latest);
  takeCommon(message);
  if (message.screen) setScreen(message.screen);
  renderQueue();
  renderApproval();
}

function applyUpdate(message) {
  if (message.chat) setChat(message.chat);
  for (const post of message.queue_upsert || []) state.queue.set(String(post.id), post);
  for (const id of message.queue_remove || []) state.queue.delete(String(id));
  for (const post of message.wall_add || []) state.wall.add(String(post.id));
  for (const id of message.wall_remove || []) state.wall.delete(String(id));
  remember(message.posts);
  for (const change of message.retagged || []) retagLocally(String(change.id), change.question ?? null);
  for (const change of message.also || []) alsoLocally(String(change.id), change.also || []);
  takeCommon(message);
  if (message.screen) setScreen(message.screen);
  renderQueue();
  renderApproval();
}

function takeCommon(message) {
  if (message.sources) state.sources = message.sources;
  if (message.spend) state.spend = message.spend;
  renderSources();
}

function remember(posts) {
  for (const post of posts || []) {
    if (!post || post.kind === "retweet") continue;
    state.recent.set(String(post.id), post);
  }
  if (state.recent.size > APPROVAL_MAX * 4) {
    const newest = [...state.recent.values()].sort(newestFirst).slice(0, APPROVAL_MAX * 2);
    state.recent = new Map(newest.map((p) => [String(p.id), p]));
  }
}

function setChat(chat) {
  if (!chat) return;
  state.chat = chat;
  $(SEL.chatTitle).textContent = chat.title || chat.slug || "";
  $(SEL.chatHashtags).textContent = (chat.hashtags || []).join(" ");
  $(SEL.signinChat).textContent = chat.title || "";
  document.title = `${chat.title || chat.slug} · panel`;
  renderQuestionChoices();
  if (!state.dirty.questions) renderQuestionRows(chat.questions || []);
}

function questionNumbers() {
  return (state.chat?.questions || []).map((q) => Number(q.number)).sort((a, b) => a - b);
}

function questionTitle(number) {
  const q = (state.chat?.questions || []).find((item) => Number(item.number) === Number(number));
  return q?.text || "";
}

// ---- rendering posts ------------------------------------------------------------------------------

function newestFirst(a, b) {
  const ta = parseTime(a.created_at) ?? 0;
  const tb = parseTime(b.created_at) ?? 0;
  if (tb !== ta) return tb - ta;
  return String(b.id).localeCompare(String(a.id), undefined, { numeric: true });
}

/** A post with what the panel knows of it: the live queue entry when it is queued (kept fresh
 * by the WebSocket), else what the last action's answer said. */
function flagsOf(post) {
  const id = String(post.id);
  const queued = state.queue.get(id);
  if (queued) return { ...post, ...queued };
  return { ...post, ...(state.marks.get(id) || {}) };
}

function chip(text, className) {
  return el("span", { className: `chip ${className}`, text });
}

function button(action, label, { value, pressed, primary = false, accent = false, disabled = false, title } = {}) {
  const node = el("button", {
    className: `button button--small${primary ? " button--primary" : ""}${accent ? " button--accent" : ""}`,
    text: label,
    title,
    attrs: { type: "button" },
    dataset: { action },
  });
  if (value !== undefined) node.dataset.value = String(value);
  if (pressed !== undefined) node.setAttribute("aria-pressed", pressed ? "true" : "false");
  node.disabled = disabled;
  return node;
}

function retagSelect(post) {
  const select = el("select", {
    className: "input input--small",
    attrs: { "aria-label": "Question tag" },
    dataset: { action: ACTIONS.retag },
  });
  const current = post.question === null || post.question === undefined ? RETAG_NONE : String(post.question);
  const options = [
    ...questionNumbers().map((n) => [String(n), `Q${n}`]),
    [RETAG_NONE, "none"],
    [RETAG_AUTO, "automatic"],
  ];
  if (current !== RETAG_NONE && !options.some(([value]) => value === current)) {
    options.unshift([current, `Q${current}`]);
  }
  for (const [value, label] of options) {
    const option = el("option", { text: label, attrs: { value } });
    if (value === current) option.selected = true;
    select.append(option);
  }
  select.dataset.current = current;
  return select;
}

/**
 * One post as the panel shows it. `actions` lists the buttons: claim (claim/release), handled,
 * hide, pin, retag, approve.
 */
function postItem(raw, actions) {
  const post = flagsOf(raw);
  const id = String(post.id);
  const mine = post.claimed_by && state.me && post.claimed_by === state.me.name;
  const node = el("article", {
    className: `post item${post.hidden ? " is-hidden" : ""}${post.claimed_by ? " is-claimed" : ""}${mine ? " is-mine" : ""}`,
    dataset: { id, question: post.question == null ? "" : String(post.question) },
  });
  const has = post.question !== null && post.question !== undefined;
  const head = el("header", { className: "item__head" }, [
    avatar(post),
    el("span", { className: "post__name", text: post.name || post.username || "" }),
    post.username ? el("span", { className: "post__user", text: `@${post.username}` }) : null,
    networkBadge(post),
    el("span", {
      className: has ? "badge post__question" : "badge badge--none post__question",
      text: has ? `Q${post.question}` : "no question",
      title: has ? questionTitle(post.question) : "",
    }),
    post.kind && post.kind !== "original" ? chip(post.kind, "chip--kind") : null,
    post.manual ? chip("tagged by hand", "chip--kind") : null,
    post.pinned ? chip("pinned", "chip--pin") : null,
    post.hidden ? chip("hidden from screen", "chip--bad") : null,
    state.wall.has(id) ? chip("on screen", "chip--good") : null,
    post.held && !state.wall.has(id) && !post.hidden ? chip("held back", "chip--warn") : null,
    timeElement(post.created_at, localTime(post.created_at)),
  ]);
  const text = el("p", { className: "post__text", text: post.text || "" });
  const foot = el("footer", { className: "item__foot" });
  const link = postLink(post);
  if (link) foot.append(link);
  const also = alsoLinks(post);
  if (also) foot.append(also);
  const claimedBy = el("span", { className: "claimed-by", text: "" });
  if (post.claimed_by) claimedBy.textContent = mine ? "Claimed by you" : `Claimed by ${post.claimed_by}`;
  else claimedBy.hidden = true;
  foot.append(claimedBy);
  const buttons = el("div", { className: "item__actions" });
  if (actions.includes("claim")) {
    const canRelease = mine || (post.claimed_by && state.me?.role === "admin");
    if (!post.claimed_by) buttons.append(button(ACTIONS.claim, "Claim", { accent: true }));
    else if (canRelease) buttons.append(button(ACTIONS.release, mine ? "Release" : "Release theirs"));
    else buttons.append(button(ACTIONS.claim, "Claim", { disabled: true, title: `Claimed by ${post.claimed_by}` }));
  }
  if (actions.includes("approve")) buttons.append(button(ACTIONS.approve, "Approve", { primary: true }));
  if (actions.includes("handled")) buttons.append(button(ACTIONS.handled, "Handled"));
  if (actions.includes("pin")) {
    buttons.append(button(ACTIONS.pin, post.pinned ? "Unpin" : "Pin", { value: !post.pinned, pressed: !!post.pinned }));
  }
  if (actions.includes("hide")) {
    buttons.append(button(ACTIONS.hide, post.hidden ? "Unhide" : "Hide", { value: !post.hidden, pressed: !!post.hidden }));
  }
  if (actions.includes("retag")) buttons.append(retagSelect(post));
  foot.append(buttons);
  node.append(head, text, foot);
  return node;
}

// ---- the queue ------------------------------------------------------------------------------------

function renderFilters(posts) {
  const box = $(SEL.queueFilters);
  const counts = new Map();
  for (const post of posts) counts.set(post.question, (counts.get(post.question) || 0) + 1);
  const numbers = [...new Set([...questionNumbers(), ...[...counts.keys()].filter((n) => n != null)])].sort((a, b) => a - b);
  const choices = [["all", "All", posts.length], ...numbers.map((n) => [String(n), `Q${n}`, counts.get(n) || 0])];
  if (state.filter !== "all" && !choices.some(([value]) => value === state.filter)) state.filter = "all";
  // Update the buttons in place: one replaced under the pointer would swallow the click.
  const existing = new Map([...box.children].map((node) => [node.dataset.filter, node]));
  const nodes = choices.map(([value, label, count]) => {
    const node = existing.get(value) || el("button", {
      className: "filter",
      attrs: { type: "button" },
      dataset: { filter: value },
    }, [el("span", { className: "filter__label" }), el("span", { className: "filter__count num" })]);
    node.querySelector(".filter__label").textContent = label;
    node.querySelector(".filter__count").textContent = String(count);
    node.setAttribute("aria-pressed", state.filter === value ? "true" : "false");
    node.title = value === "all" ? "" : questionTitle(value);
    return node;
  });
  place(box, nodes);
}

function renderNetworkFilters(posts) {
  const box = $(SEL.networkFilters);
  const counts = new Map();
  for (const post of posts) {
    const network = postNetwork(post);
    counts.set(network, (counts.get(network) || 0) + 1);
  }
  const networks = Object.keys(NETWORKS).filter((n) => counts.has(n) || n === state.network);
  // One network and no filter chosen: nothing to choose between.
  box.hidden = networks.length < 2 && state.network === "all";
  const choices = [["all", "All networks", posts.length], ...networks.map((n) => [n, NETWORKS[n], counts.get(n) || 0])];
  const existing = new Map([...box.children].map((node) => [node.dataset.network, node]));
  const nodes = choices.map(([value, label, count]) => {
    const node = existing.get(value) || el("button", {
      className: "filter",
      attrs: { type: "button" },
      dataset: { network: value },
    }, [el("span", { className: "filter__label" }), el("span", { className: "filter__count num" })]);
    node.querySelector(".filter__label").textContent = label;
    node.querySelector(".filter__count").textContent = String(count);
    node.setAttribute("aria-pressed", state.network === value ? "true" : "false");
    return node;
  });
  place(box, nodes);
}

function renderQueue() {
  const all = [...state.queue.values()].filter((p) => !p.handled).sort(newestFirst);
  renderNetworkFilters(all);
  const ofNetwork = state.network === "all" ? all : all.filter((p) => postNetwork(p) === state.network);
  renderFilters(ofNetwork);
  const shown = state.filter === "all" ? ofNetwork : ofNetwork.filter((p) => String(p.question) === state.filter);
  $(SEL.queueCount).textContent = String(all.length);
  reconcile($(SEL.queueList), shown, QUEUE_ACTIONS);
  const empty = $(SEL.queueEmpty);
  empty.hidden = shown.length > 0;
  const where = [
    state.filter === "all" ? "" : `Q${state.filter}`,
    state.network === "all" ? "" : NETWORKS[state.network] || state.network,
  ].filter(Boolean).join(" on ");
  empty.textContent = all.length
    ? `Nothing waiting for ${where}.`
    : "Nothing waiting: every answer has a reply from the panel.";
}

const QUEUE_ACTIONS = ["claim", "handled", "hide", "pin", "retag"];
const APPROVAL_ACTIONS = ["approve", "hide", "pin", "retag"];
const SEARCH_ACTIONS = ["hide", "pin", "retag"];

/** What a rendered post depends on: its node is rebuilt only when this changes. */
function signature(post, actions) {
  const p = flagsOf(post);
  return JSON.stringify([
    p.id, p.network, p.url, p.text, p.name, p.username, p.question, p.kind, p.created_at, p.claimed_by, p.hidden, p.pinned,
    p.manual, p.held, state.wall.has(String(p.id)), state.me?.name, state.me?.role, questionNumbers(), actions,
  ]);
}

/** Bring a list to `posts`, keeping the nodes of posts that did not change (and their focus). */
function reconcile(list, posts, actions) {
  const old = new Map([...list.children].map((node) => [node.dataset.id, node]));
  const nodes = posts.map((post) => {
    const sig = signature(post, actions);
    const node = old.get(String(post.id));
    if (node && node.dataset.sig === sig) return node;
    const fresh = postItem(post, actions);
    fresh.dataset.sig = sig;
    return fresh;
  });
  place(list, nodes);
}

/** Make `nodes` the children of `box`, touching only what moved. */
function place(box, nodes) {
  const keep = new Set(nodes);
  for (const node of [...box.children]) if (!keep.has(node)) node.remove();
  nodes.forEach((node, i) => {
    if (box.children[i] !== node) box.insertBefore(node, box.children[i] || null);
  });
}

// ---- approval ---------------------------------------------------------------------------------------

function renderApproval() {
  const approvalMode = state.screen?.mode === "approval";
  $(SEL.approvalTab).hidden = !approvalMode;
  if (!approvalMode && state.tab === "approval") selectTab("queue");
  const posts = [...state.recent.values()]
    .filter((p) => !state.wall.has(String(p.id)) && !state.approved.has(String(p.id)) && !flagsOf(p).hidden)
    .sort(newestFirst)
    .slice(0, APPROVAL_MAX);
  $(SEL.approvalCount).textContent = String(posts.length);
  reconcile($(SEL.approvalList), posts, APPROVAL_ACTIONS);
  $(SEL.approvalEmpty).hidden = posts.length > 0;
}

// ---- search -----------------------------------------------------------------------------------------

async function runSearch(event) {
  event?.preventDefault();
  const params = new URLSearchParams();
  const q = $(SEL.searchQ).value.trim();
  const author = $(SEL.searchAuthor).value.trim();
  const question = $(SEL.searchQuestion).value;
  const network = $(SEL.searchNetwork).value;
  if (q) params.set("q", q);
  if (author) params.set("author", author);
  if (question !== "") params.set("question", question);
  if (network !== "") params.set("network", network);
  params.set("limit", String(SEARCH_LIMIT));
  $(SEL.searchSummary).textContent = "Searching…";
  try {
    const result = await api(`${base}/posts?${params}`, { token: state.token });
    state.search = { total: Number(result?.total) || 0, posts: Array.isArray(result?.posts) ? result.posts : [] };
    renderSearch();
  } catch (error) {
    $(SEL.searchSummary).textContent = "";
    say(error.message, "error");
  }
}

function renderSearch() {
  const search = state.search;
  if (!search) return;
  const count = search.posts.length;
  $(SEL.searchSummary).textContent = search.total > count
    ? `The newest ${count} of ${formatNumber(search.total)} posts`
    : `${formatNumber(search.total)} ${search.total === 1 ? "post" : "posts"}`;
  reconcile($(SEL.searchList), search.posts, SEARCH_ACTIONS);
}

function renderQuestionChoices() {
  const numbers = questionNumbers();
  const search = $(SEL.searchQuestion);
  const keep = search.value;
  search.replaceChildren(
    el("option", { text: "any", attrs: { value: "" } }),
    ...numbers.map((n) => el("option", { text: `Q${n}`, attrs: { value: String(n) } })),
    el("option", { text: "no question", attrs: { value: "0" } }),
  );
  search.value = [...search.options].some((o) => o.value === keep) ? keep : "";

  const current = $(SEL.currentQuestion);
  current.replaceChildren(
    el("option", { text: "Automatic (the host's question posts)", attrs: { value: "" } }),
    ...numbers.map((n) => {
      const text = questionTitle(n);
      const short = text.length > 60 ? `${text.slice(0, 59)}…` : text;
      return el("option", { text: short ? `Q${n} · ${short}` : `Q${n}`, attrs: { value: String(n) } });
    }),
  );
  if (state.screen) current.value = state.screen.current_question == null ? "" : String(state.screen.current_question);
}

// ---- actions on posts ------------------------------------------------------------------------------

async function onListClick(event) {
  const target = event.target.closest("button[data-action]");
  if (!target || target.disabled) return;
  const item = target.closest(".post[data-id]");
  if (!item) return;
  await act(item.dataset.id, target.dataset.action, target.dataset.value, target);
}

async function onListChange(event) {
  const target = event.target.closest("select[data-action]");
  if (!target) return;
  const item = target.closest(".post[data-id]");
  if (!item) return;
  await act(item.dataset.id, target.dataset.action, target.value, target);
}

function findPost(id) {
  return (
    state.queue.get(id) ||
    state.search?.posts.find((p) => String(p.id) === id) ||
    state.recent.get(id) ||
    { id }
  );
}

function requestFor(id, action, value) {
  const path = `${base}/posts/${encodeURIComponent(id)}`;
  switch (action) {
    case ACTIONS.claim:
      return { method: "POST", path: `${path}/claim` };
    case ACTIONS.release:
      return { method: "DELETE", path: `${path}/claim` };
    case ACTIONS.handled:
      return { method: "PUT", path: `${path}/handled`, body: { handled: true } };
    case ACTIONS.hide:
      return { method: "PUT", path: `${path}/hidden`, body: { hidden: value !== "false" } };
    case ACTIONS.pin:
      return { method: "PUT", path: `${path}/pinned`, body: { pinned: value !== "false" } };
    case ACTIONS.approve:
      return { method: "PUT", path: `${path}/approved`, body: { approved: true } };
    case ACTIONS.retag:
      if (value === RETAG_AUTO) return { method: "DELETE", path: `${path}/question` };
      return {
        method: "PUT",
        path: `${path}/question`,
        body: { question: value === RETAG_NONE ? null : Number(value) },
      };
    default:
      return null;
  }
}

/** What the page shows at once, before the server answers. */
function optimistic(id, action, value) {
  const queued = state.queue.get(id);
  const marks = { ...(state.marks.get(id) || {}) };
  switch (action) {
    case ACTIONS.claim:
      if (queued) state.queue.set(id, { ...queued, claimed_by: state.me?.name || "you" });
      break;
    case ACTIONS.release:
      if (queued) state.queue.set(id, { ...queued, claimed_by: null });
      break;
    case ACTIONS.handled:
      state.queue.delete(id);
      break;
    case ACTIONS.hide:
      marks.hidden = value !== "false";
      if (queued) state.queue.set(id, { ...queued, hidden: marks.hidden });
      break;
    case ACTIONS.pin:
      marks.pinned = value !== "false";
      if (queued) state.queue.set(id, { ...queued, pinned: marks.pinned });
      break;
    case ACTIONS.approve:
      state.approved.add(id);
      break;
    case ACTIONS.retag:
      if (value !== RETAG_AUTO) retagLocally(id, value === RETAG_NONE ? null : Number(value));
      break;
    default:
  }
  state.marks.set(id, marks);
}

/** A post's cross-posts changed: its "also on" links in every list that holds it. */
function alsoLocally(id, also) {
  const queued = state.queue.get(id);
  if (queued) state.queue.set(id, { ...queued, also });
  const found = state.search?.posts.find((p) => String(p.id) === id);
  if (found) found.also = also;
  const recent = state.recent.get(id);
  if (recent) recent.also = also;
}

function retagLocally(id, question) {
  const queued = state.queue.get(id);
  if (queued) state.queue.set(id, { ...queued, question });
  const found = state.search?.posts.find((p) => String(p.id) === id);
  if (found) found.question = question;
  const recent = state.recent.get(id);
  if (recent) recent.question = question;
  const marks = state.marks.get(id);
  if (marks && "question" in marks) marks.question = question;
}

async function act(id, action, value, control) {
  const request = requestFor(id, action, value);
  if (!request) return;
  const before = {
    queued: state.queue.get(id),
    marks: state.marks.get(id),
    approved: state.approved.has(id),
    question: findPost(id).question,
  };
  optimistic(id, action, value);
  renderAll();
  try {
    const answer = await api(request.path, { method: request.method, body: request.body, token: state.token });
    if (answer && typeof answer === "object" && String(answer.id) === id) learn(answer);
    renderAll();
    if (action === ACTIONS.handled) say("Marked handled: it left the queue.");
  } catch (error) {
    // Undo what we showed, then say why.
    if (before.queued) state.queue.set(id, before.queued);
    if (before.marks) state.marks.set(id, before.marks);
    else state.marks.delete(id);
    if (!before.approved) state.approved.delete(id);
    if (action === ACTIONS.retag) retagLocally(id, before.question ?? null);
    renderAll();
    say(error.message, "error");
    if (error.status === 401) signOut();
  }
  control?.blur?.();
}

/** The panel post the server answered with: the truth about one post's flags and tag. */
function learn(post) {
  const id = String(post.id);
  const flags = {};
  for (const key of ["hidden", "pinned", "approved", "handled", "claimed_by", "manual", "on_screen", "held", "question", "tag_method"]) {
    if (key in post) flags[key] = post[key];
  }
  state.marks.set(id, flags);
  const queued = state.queue.get(id);
  if (queued) {
    if (post.handled) state.queue.delete(id);
    else state.queue.set(id, { ...queued, ...flags });
  }
  if ("question" in post) retagLocally(id, post.question ?? null);
  if (post.approved) state.approved.add(id);
}

function renderAll() {
  renderQueue();
  renderApproval();
  renderSearch();
}

// ---- the screen's settings ---------------------------------------------------------------------------

function setScreen(screen) {
  state.screen = screen;
  $(SEL.currentQuestion).value = screen.current_question == null ? "" : String(screen.current_question);
  const radio = $(SEL.modeRadio(screen.mode));
  if (radio) radio.checked = true;
  if (!state.dirty.delay && document.activeElement !== $(SEL.delaySeconds)) {
    $(SEL.delaySeconds).value = String(screen.delay_seconds ?? 30);
  }
  $(SEL.screenPublic).checked = !!screen.public;
  if (!state.dirty.blocks) {
    $(SEL.blockedWords).value = (screen.blocked_words || []).join("\n");
    $(SEL.blockedAccounts).value = (screen.blocked_accounts || []).join("\n");
  }
  renderApproval();
}

async function putScreen(changes, what) {
  try {
    const screen = await api(`${base}/screen`, { method: "PUT", body: changes, token: state.token });
    if (screen) setScreen(screen);
    say(what);
    return true;
  } catch (error) {
    say(error.message, "error");
    if (state.screen) setScreen(state.screen); // back to what the server has
    return false;
  }
}

function lines(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean);
}

// ---- the run of show -----------------------------------------------------------------------------------

function toLocalInput(iso) {
  const ms = parseTime(iso);
  if (ms === null) return "";
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`;
}

function fromLocalInput(value) {
  if (!value) return null;
  const ms = new Date(value).getTime(); // a datetime-local value is read as local time
  return Number.isFinite(ms) ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z") : null;
}

function questionRow(q) {
  const row = el("div", { className: "row", dataset: { row: "question" } });
  const number = el("input", {
    className: "input input--short num",
    attrs: { type: "number", min: "1", max: "99", step: "1", "aria-label": "Number", name: "number" },
  });
  number.value = q?.number ?? "";
  const when = el("input", {
    className: "input",
    attrs: { type: "datetime-local", "aria-label": "Planned time", name: "planned_at" },
  });
  when.value = toLocalInput(q?.planned_at);
  const text = el("textarea", {
    className: "input row__text",
    attrs: { rows: "2", maxlength: "1000", "aria-label": "Question text", name: "text", placeholder: "the question" },
  });
  text.value = q?.text ?? "";
  const remove = el("button", {
    className: "button button--small button--quiet",
    text: "Remove",
    attrs: { type: "button", "aria-label": "Remove this question" },
    dataset: { rowAction: "remove" },
  });
  row.append(number, when, text, remove);
  return row;
}

function renderQuestionRows(questions) {
  const sorted = [...questions].sort((a, b) => Number(a.number) - Number(b.number));
  $(SEL.questionsRows).replaceChildren(...sorted.map(questionRow));
}

function readQuestionRows() {
  const rows = [...$(SEL.questionsRows).querySelectorAll('[data-row="question"]')];
  const questions = [];
  for (const row of rows) {
    const number = Number(row.querySelector('[name="number"]').value);
    const text = row.querySelector('[name="text"]').value.trim();
    const planned = row.querySelector('[name="planned_at"]').value;
    if (!text && !planned) continue; // an empty row (a new row has its number filled in)
    if (!Number.isInteger(number) || number < 1 || number > 99) {
      throw new Error(`Give "${text || "a question"}" a number from 1 to 99.`);
    }
    if (!text) throw new Error(`Question ${number} has no text.`);
    if (questions.some((q) => q.number === number)) throw new Error(`Two questions are numbered ${number}.`);
    questions.push({ number, text, planned_at: fromLocalInput(planned) });
  }
  return questions;
}

async function saveQuestions() {
  let questions;
  try {
    questions = readQuestionRows();
  } catch (error) {
    say(error.message, "error");
    return;
  }
  try {
    const answer = await api(`${base}/questions`, { method: "PUT", body: questions, token: state.token });
    state.dirty.questions = false;
    const saved = Array.isArray(answer) ? answer : Array.isArray(answer?.questions) ? answer.questions : questions;
    setChat({ ...state.chat, questions: saved });
    renderAll();
    say("Run of show saved; tags are being recomputed.");
  } catch (error) {
    say(error.message, "error");
  }
}

// ---- sources and spend ------------------------------------------------------------------------------------

function renderSources() {
  const list = $(SEL.sources);
  if (!list) return;
  const entries = Object.entries(state.sources || {});
  if (!entries.length) {
    list.replaceChildren(el("li", { className: "source source--none", text: "No live source for this chat." }));
  } else {
    list.replaceChildren(...entries.map(([name, source]) => sourceItem(name, source || {})));
  }
  const spend = state.spend || { usd: 0, posts_read: 0 };
  $(SEL.spendUsd).textContent = `$${(Number(spend.usd) || 0).toFixed(2)}`;
  $(SEL.spendDetail).textContent = `X spend so far · ${formatNumber(spend.posts_read)} posts read`;
}

function sourceItem(name, source) {
  const stateName = ["running", "waiting", "failing", "stopped"].includes(source.state) ? source.state : "unknown";
  const item = el("li", { className: `source source--${stateName}`, dataset: { source: name, state: stateName } });
  const head = el("div", { className: "source__head" }, [
    el("span", { className: "source__name", text: name }),
    el("span", { className: "source__state", text: stateName }),
  ]);
  item.append(head);
  const lines = [];
  if (source.detail) lines.push(String(source.detail));
  const retry = parseTime(source.retry_at);
  if (stateName === "waiting" && retry !== null) {
    const seconds = Math.max(0, Math.round((retry - Date.now()) / 1000));
    lines.push(`retry at ${localTimeSeconds(source.retry_at)} (in ${seconds} s)`);
  }
  for (const line of lines) item.append(el("p", { className: "source__detail", text: line }));
  item.append(el("p", {
    className: "source__numbers num",
    text: `${formatNumber(source.posts_read)} posts read · ${formatNumber(source.requests)} requests`,
  }));
  return item;
}

// ---- the message line ------------------------------------------------------------------------------------

let messageTimer = null;
function say(text, kind = "info") {
  const node = $(SEL.message);
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => (node.hidden = true), kind === "error" ? MESSAGE_MS * 1.5 : MESSAGE_MS);
}

// ---- tabs and events -----------------------------------------------------------------------------------

function selectTab(name) {
  state.tab = name;
  for (const tab of document.querySelectorAll(SEL.tabs)) {
    tab.setAttribute("aria-selected", tab.dataset.tab === name ? "true" : "false");
  }
  for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = panel.dataset.panel !== name;
  if (name === "search" && !state.search) runSearch();
}

function bindEvents() {
  $(SEL.signinForm).addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $(SEL.tokenInput).value.trim();
    if (token) signIn(token);
  });
  $(SEL.signout).addEventListener("click", signOut);
  for (const tab of document.querySelectorAll(SEL.tabs)) {
    tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  }
  $(SEL.queueFilters).addEventListener("click", (event) => {
    const target = event.target.closest("[data-filter]");
    if (!target) return;
    state.filter = target.dataset.filter;
    renderQueue();
  });
  $(SEL.networkFilters).addEventListener("click", (event) => {
    const target = event.target.closest("[data-network]");
    if (!target) return;
    state.network = target.dataset.network;
    renderQueue();
  });
  for (const list of document.querySelectorAll(SEL.lists)) {
    list.addEventListener("click", onListClick);
    list.addEventListener("change", onListChange);
  }
  $(SEL.searchForm).addEventListener("submit", runSearch);

  $(SEL.currentQuestion).addEventListener("change", (event) => {
    const value = event.target.value;
    putScreen(
      { current_question: value === "" ? null : Number(value) },
      value === "" ? "The screen follows the host's question posts." : `The screen shows Q${value}.`,
    );
  });
  for (const radio of document.querySelectorAll(SEL.modeRadios)) {
    radio.addEventListener("change", () => {
      const changes = { mode: radio.value };
      if (radio.value === "delay") changes.delay_seconds = Number($(SEL.delaySeconds).value) || 30;
      putScreen(changes, MODE_SAID[radio.value] || "Saved.");
    });
  }
  const delay = $(SEL.delaySeconds);
  delay.addEventListener("input", () => (state.dirty.delay = true));
  delay.addEventListener("change", async () => {
    const seconds = Number(delay.value);
    const ok = await putScreen({ mode: "delay", delay_seconds: seconds }, `Posts reach the screen after ${seconds} s.`);
    if (ok) state.dirty.delay = false;
  });
  $(SEL.screenPublic).addEventListener("change", (event) => {
    const open = event.target.checked;
    putScreen({ public: open }, open ? "The big screen is public." : "The big screen now needs a credential.");
  });
  for (const area of [SEL.blockedWords, SEL.blockedAccounts]) {
    $(area).addEventListener("input", () => (state.dirty.blocks = true));
  }
  $(SEL.blocksSave).addEventListener("click", async () => {
    const ok = await putScreen(
      {
        blocked_words: lines($(SEL.blockedWords).value),
        blocked_accounts: lines($(SEL.blockedAccounts).value).map((a) => a.replace(/^@/, "")),
      },
      "Block lists saved.",
    );
    if (ok) state.dirty.blocks = false;
  });
  $(SEL.questionsRows).addEventListener("input", () => (state.dirty.questions = true));
  $(SEL.questionsRows).addEventListener("click", (event) => {
    const remove = event.target.closest('[data-row-action="remove"]');
    if (!remove) return;
    remove.closest('[data-row="question"]').remove();
    state.dirty.questions = true;
  });
  $(SEL.questionsAdd).addEventListener("click", () => {
    const numbers = [...$(SEL.questionsRows).querySelectorAll('[name="number"]')].map((n) => Number(n.value) || 0);
    const row = questionRow({ number: Math.max(0, ...numbers) + 1, text: "", planned_at: null });
    $(SEL.questionsRows).append(row);
    state.dirty.questions = true;
    row.querySelector('[name="text"]').focus();
  });
  $(SEL.questionsSave).addEventListener("click", saveQuestions);
}

const MODE_SAID = {
  immediate: "Posts reach the screen at once.",
  delay: "Posts reach the screen after the delay, unless hidden.",
  approval: "Posts reach the screen only when approved.",
};
