// Handouts in the room: the current phase's handouts as "Handout" buttons for everyone, a
// phone-sized reader one page at a time, and for the host and co-host "Show to all": every
// participant's reader opens on the same page and follows the host's page turns until
// "Stop showing". The pages are the server's rendering of the Markdown (raw HTML off), so
// nothing a clinician typed becomes script.
import { $, button, el } from "./lib/dom.js";

const state = { shelf: [], view: null, phase: null, reader: null, following: false, reveal: false };
const loaded = new Map();  // "id/version" -> the pages JSON, fetched once
let send = () => {};
let canShow = false;

const key = (id, version) => id + "/" + version;

function currentPhase(clock) {
  if (!clock || !clock.phases || clock.index === undefined || clock.index === null) return null;
  const phase = clock.phases[clock.index];
  return phase ? phase.title : null;
}

async function load(id, version) {
  const at = key(id, version);
  if (!loaded.has(at)) {
    const response = await fetch("/handouts/" + encodeURIComponent(id) + "/v/" + version + "/pages", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error("the handout could not be opened");
    loaded.set(at, await response.json());
  }
  return loaded.get(at);
}

function offered() {
  return state.shelf.filter((h) => h.phase === null || h.phase === state.phase);
}

function renderButtons() {
  const box = $("handouts");
  const row = $("handout-buttons");
  if (!box || !row) return;
  const items = offered();
  const showing = state.view;
  box.hidden = items.length === 0 && !showing;
  row.replaceChildren();
  for (const h of items) {
    const open = button("Handout: " + h.title, () => openReader(h.handout_id, h.version, 0, false));
    row.append(open);
    if (canShow) {
      const all = button("Show to all", () => send({ type: "handout", op: "show", handout_id: h.handout_id, version: h.version, page: 0 }));
      all.setAttribute("aria-label", "Show " + h.title + " to all");
      row.append(all);
    }
  }
  if (showing) {
    row.append(el("p", "Showing to everyone: " + showing.title + " (page " + (showing.page + 1) + " of " + showing.pages + ")", "muted handout-showing"));
    if (canShow) row.append(button("Stop showing", () => send({ type: "handout", op: "stop" })));
  }
}

async function openReader(id, version, page, following) {
  state.reader = { id, version, page };
  state.following = following;
  let doc;
  try {
    doc = await load(id, version);
  } catch (error) {
    $("handout-where").textContent = "The handout could not be opened. Try again in a moment.";
    $("handout-reader").hidden = false;
    return;
  }
  if (!state.reader || state.reader.id !== id || state.reader.version !== version) return;
  renderReader(doc);
}

function closeReader() {
  state.reader = null;
  state.following = false;
  $("handout-reader").hidden = true;
}

// The host's turns go to everyone while the host shows this handout.
function hostShowing(reader) {
  return canShow && state.view && state.view.handout_id === reader.id && state.view.version === reader.version;
}

function turn(to) {
  const reader = state.reader;
  if (!reader) return;
  if (hostShowing(reader)) {
    send({ type: "handout", op: "page", page: to });
    return;
  }
  reader.page = to;
  state.following = false;
  renderReader(loaded.get(key(reader.id, reader.version)));
}

function followingNote(reader) {
  if (hostShowing(reader)) return " · everyone sees this page";
  return state.following ? " · following your clinician" : "";
}

function renderReader(doc) {
  const reader = state.reader;
  if (!reader || !doc) return;
  const box = $("handout-reader");
  box.hidden = false;
  if (state.reveal) {
    // The host just started showing it: bring the reader into view on a phone.
    state.reveal = false;
    box.scrollIntoView({ block: "start" });
  }
  $("handout-title").textContent = doc.title;
  const body = $("handout-body");
  const turns = $("handout-turns");
  turns.replaceChildren();
  if (doc.format === "pdf") {
    $("handout-where").textContent = followingNote(reader).replace(" · ", "");
    const link = el("a", "Open the PDF", "button primary");
    link.href = doc.file;
    link.target = "_blank";
    link.rel = "noopener";
    body.replaceChildren(link);
  } else {
    const pages = doc.pages.length;
    reader.page = Math.max(0, Math.min(pages - 1, reader.page));
    $("handout-where").textContent = "Page " + (reader.page + 1) + " of " + pages + followingNote(reader);
    // Server-rendered from Markdown with raw HTML off (care/handouts.py).
    body.innerHTML = doc.pages[reader.page].html;
    if (reader.page > 0) turns.append(button("Previous page", () => turn(reader.page - 1)));
    if (reader.page < pages - 1) turns.append(button("Next page", () => turn(reader.page + 1), "primary"));
  }
  const shown = state.view;
  if (shown && !state.following && !canShow) {
    turns.append(button("Follow your clinician", () => openReader(shown.handout_id, shown.version, shown.page, true)));
  }
  turns.append(button("Close handout", closeReader));
}

function viewChanged(before) {
  const view = state.view;
  if (!view) {
    if (before && state.following) {
      closeReader();
      const where = $("handout-where");
      if (where) where.textContent = "";
    }
    return;
  }
  const fresh = !before || before.handout_id !== view.handout_id || before.version !== view.version;
  if (fresh) state.reveal = true;
  if (fresh || state.following || (canShow && state.reader && hostShowing(state.reader))) {
    openReader(view.handout_id, view.version, view.page, true);
  }
}

export const handouts = {
  // The room page's role and its socket's send.
  setup({ role, send: sender }) {
    send = sender;
    canShow = role === "host" || role === "cohost";
  },
  // Every room message passes by; only the handout and clock ones matter here.
  receive(message) {
    const before = state.view;
    switch (message.type) {
      case "snapshot":
        state.shelf = message.handouts || [];
        state.view = message.handout || null;
        state.phase = currentPhase(message.clock);
        break;
      case "clock":
        state.phase = currentPhase(message.clock);
        break;
      case "handouts":
        state.shelf = message.handouts || [];
        break;
      case "handout_view":
        state.view = message.view;
        break;
      default:
        return;
    }
    renderButtons();
    const same = JSON.stringify(before) === JSON.stringify(state.view);
    if (!same || (message.type === "snapshot" && state.view && !state.reader)) viewChanged(same ? null : before);
  },
};
