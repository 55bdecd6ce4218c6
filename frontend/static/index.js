// The chats page: every chat from GET /api/chats, as live (now within [start, end)), upcoming
// and past, with links to its big screen, panel and report (and its series' report). Chat data
// goes in as text only.

import { api, el, localDayTime, localTime, parseTime } from "./common.js";

const SEL = {
  list: "#chats",
  error: "#chats-error",
  empty: "#chats-empty",
  group: (name) => `[data-group="${name}"]`,
  groupList: ".group__list",
  groupCount: ".count",
};

const REFRESH_MS = 60_000; // a chat moves from upcoming to live to past as time goes

const $ = (selector) => document.querySelector(selector);

load();
setInterval(load, REFRESH_MS);

async function load() {
  try {
    const chats = await api("/api/chats");
    render(Array.isArray(chats) ? chats : []);
    $(SEL.error).hidden = true;
  } catch (error) {
    $(SEL.error).textContent = `The chats could not be loaded: ${error.message}`;
    $(SEL.error).hidden = false;
  } finally {
    $(SEL.list).setAttribute("aria-busy", "false");
  }
}

function groupOf(chat, now) {
  const start = parseTime(chat.start);
  const end = parseTime(chat.end);
  if (start !== null && end !== null && start <= now && now < end) return "live";
  if (start !== null && now < start) return "upcoming";
  return "past";
}

function render(chats) {
  const now = Date.now();
  const groups = { live: [], upcoming: [], past: [] };
  for (const chat of chats) groups[groupOf(chat, now)].push(chat);
  // Live and upcoming: soonest first; past: most recent first.
  const byStart = (a, b) => (parseTime(a.start) ?? 0) - (parseTime(b.start) ?? 0);
  groups.live.sort(byStart);
  groups.upcoming.sort(byStart);
  groups.past.sort((a, b) => byStart(b, a));
  for (const [name, list] of Object.entries(groups)) {
    const section = $(SEL.group(name));
    section.hidden = list.length === 0;
    section.querySelector(SEL.groupCount).textContent = list.length ? String(list.length) : "";
    section.querySelector(SEL.groupList).replaceChildren(...list.map((chat) => card(chat, name)));
  }
  $(SEL.empty).hidden = chats.length > 0;
}

function when(chat) {
  const start = localDayTime(chat.start);
  const end = localTime(chat.end);
  const sameDay = new Date(parseTime(chat.start) ?? 0).toDateString() === new Date(parseTime(chat.end) ?? 0).toDateString();
  return sameDay ? `${start}–${end}` : `${start} – ${localDayTime(chat.end)}`;
}

function card(chat, group) {
  const slug = encodeURIComponent(String(chat.slug ?? ""));
  const questions = Array.isArray(chat.questions) ? chat.questions.length : 0;
  const link = (text, href, primary) =>
    el("a", { className: `button-link${primary ? " button-link--primary" : ""}`, text, attrs: { href } });
  return el("article", { className: "chat-card", dataset: { slug: String(chat.slug ?? ""), group } }, [
    el("h3", { className: "chat-card__title", text: chat.title || chat.slug || "" }),
    el("div", { className: "chat-card__meta" }, [
      el("span", { className: "hashtags", text: (chat.hashtags || []).join(" ") }),
      el("time", { text: when(chat), attrs: { datetime: String(chat.start ?? "") } }),
      questions ? el("span", { text: `${questions} ${questions === 1 ? "question" : "questions"}` }) : null,
    ]),
    el("nav", { className: "chat-card__links", attrs: { "aria-label": "Pages of this chat" } }, [
      link("Big screen", `/chats/${slug}/screen`, group === "live"),
      link("Panel", `/chats/${slug}/panel`, false),
      link("Report", `/chats/${slug}/report`, group === "past"),
      chat.series ? link("Series report", `/series/${encodeURIComponent(String(chat.series))}/report`, false) : null,
    ]),
  ]);
}
