// Breakout practice rooms on the room page. Staff: the "Breakouts" panel (split, the
// per-room list with Visit and one-tap moves, broadcast, recall all, facilitator calls).
// Patients: a banner with their breakout's name, the prompt, the time left and a
// "Facilitator please" button. The private "I need help" stays where it is. The timer is
// counted down from the server's absolute end time, corrected by the room's clock offset.
// room.js drives it (setup, update, handle, placed); text always goes in as textContent.
import { mmss } from "./lib/clock.js";
import { $, el, button } from "./lib/dom.js";

let ctx = null;
let view = null;
const calls = new Map();

function isStaff() {
  return ctx.role !== "participant";
}

function canRun() {
  return ctx.role === "host" || ctx.role === "cohost";
}

function nameOf(id) {
  const member = ctx.members().get(id);
  return member ? member.name : "Someone";
}

// Where a member's media flows, as the server decides it: a private room first, then a
// breakout; tiles of people elsewhere are not shown (their media no longer arrives).
function spaceOf(member) {
  if (!member) return null;
  if (member.space) return member.space;
  if (!view) return null;
  if (view.rooms) {
    const room = view.rooms.find((r) => r.members.includes(member.id) || r.visitors.includes(member.id));
    return room ? "breakout-" + room.id : null;
  }
  if (view.room) {
    const here = view.room.members.includes(member.id) || view.room.visitors.includes(member.id) || member.id === ctx.me;
    return here ? "breakout-" + view.room.id : "elsewhere";
  }
  return (view.elsewhere || []).includes(member.id) ? "elsewhere" : null;
}

function remainingText() {
  const left = Math.max(0, Math.round(Date.parse(view.ends_at) / 1000 - ctx.serverNow()));
  return mmss(left) + " left";
}

function tick() {
  if (!view) return;
  const text = remainingText();
  const warning = view.warning || Date.parse(view.ends_at) / 1000 - ctx.serverNow() <= 60;
  if ($("breakout-remaining")) $("breakout-remaining").textContent = text;
  if ($("breakout-warning")) $("breakout-warning").hidden = !warning;
  if ($("breakout-staff-remaining")) $("breakout-staff-remaining").textContent = text + (warning ? " · 1-minute warning given" : "");
}

function news(text) {
  if (isStaff()) {
    ctx.notify(text);
  } else if ($("breakout-news")) {
    $("breakout-news").textContent = text;
  }
}

// Patients ----------------------------------------------------------------------------------
function renderBanner() {
  const banner = $("breakout-banner");
  if (!banner) return;
  banner.hidden = !view;
  if (!view) return;
  const room = view.room;
  $("breakout-name").textContent = room ? "You are in " + room.name : "Breakout rooms are open: you are in the main room";
  $("breakout-prompt").textContent = view.prompt ? "Practise: " + view.prompt : "";
  $("breakout-call").hidden = !room;
  $("breakout-call").disabled = Boolean(view.called);
  $("breakout-call-status").textContent = view.called ? "A facilitator has been asked to join you." : "";
  tick();
}

// Staff ---------------------------------------------------------------------------------------
function patientsInRoom() {
  return [...ctx.members().values()].filter((m) => m.role === "participant" && (m.presence === "admitted" || m.presence === "reconnecting"));
}

function renderHand() {
  const box = $("breakout-hand");
  if (!box) return;
  const byHand = $("breakout-mode").value === "hand";
  box.hidden = !byHand;
  $("breakout-count").disabled = $("breakout-mode").value === "pairs" || $("breakout-mode").value === "triads";
  if (!byHand) return;
  const count = Math.max(1, Math.min(20, Number($("breakout-count").value) || 1));
  // Rebuilt only when the patients or the number of rooms change: a picker being used
  // is not replaced under the host's finger by an unrelated message.
  const key = count + "|" + patientsInRoom().map((m) => m.id + ":" + m.name).join(",");
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  const kept = new Map([...box.querySelectorAll("select")].map((s) => [s.dataset.member, s.value]));
  box.replaceChildren();
  patientsInRoom().forEach((member, index) => {
    const label = el("label", member.name);
    const select = el("select");
    select.dataset.member = member.id;
    select.setAttribute("aria-label", "Room for " + member.name);
    for (let i = 1; i <= count; i += 1) {
      const option = el("option", "Room " + i);
      option.value = String(i);
      select.append(option);
    }
    const previous = kept.get(member.id);
    select.value = previous && Number(previous) <= count ? previous : String((index % count) + 1);
    label.append(" ", select);
    box.append(label);
  });
}

function renderStaff() {
  const running = $("breakout-running");
  if (!running) return;
  running.hidden = !view;
  const form = $("breakout-form");
  if (form) form.hidden = Boolean(view);
  if (!view) { renderCalls(); return; }
  $("breakout-staff-prompt").textContent = view.prompt ? "Prompt: " + view.prompt : "";
  const list = $("breakout-rooms");
  list.replaceChildren();
  const mine = view.rooms.find((r) => r.visitors.includes(ctx.me));
  for (const room of view.rooms) {
    const item = el("li", null, "breakout-room");
    item.dataset.breakout = room.id;
    item.append(el("strong", room.name));
    if (room.calls.length) item.append(" ", el("span", "asks for a facilitator", "badge alert"));
    const visit = button(mine && mine.id === room.id ? "You are here" : "Visit", () => ctx.send({ type: "breakout_visit", breakout_id: room.id }));
    visit.disabled = Boolean(mine && mine.id === room.id);
    visit.setAttribute("aria-label", "Visit " + room.name);
    item.append(" ", visit);
    const people = el("ul", null, "people");
    for (const id of room.members) {
      const person = el("li", nameOf(id));
      if (canRun()) {
        // One tap moves a patient to another room; their connection stays up.
        for (const other of view.rooms) {
          if (other.id === room.id) continue;
          const move = button("→ " + other.name, () => ctx.send({ type: "breakout_move", member_id: id, breakout_id: other.id }));
          move.setAttribute("aria-label", "Move " + nameOf(id) + " to " + other.name);
          person.append(" ", move);
        }
      }
      people.append(person);
    }
    for (const id of room.visitors) people.append(el("li", nameOf(id) + " (visiting)", "muted"));
    item.append(people);
    list.append(item);
  }
  const placed = new Set(view.rooms.flatMap((r) => r.members));
  const main = patientsInRoom().filter((m) => !placed.has(m.id));
  if (main.length && canRun()) {
    const item = el("li", null, "breakout-room");
    item.append(el("strong", "Main room"));
    const people = el("ul", null, "people");
    for (const member of main) {
      const person = el("li", member.name);
      for (const other of view.rooms) {
        const move = button("→ " + other.name, () => ctx.send({ type: "breakout_move", member_id: member.id, breakout_id: other.id }));
        move.setAttribute("aria-label", "Move " + member.name + " to " + other.name);
        person.append(" ", move);
      }
      people.append(person);
    }
    item.append(people);
    list.append(item);
  }
  $("breakout-main").hidden = !mine;
  renderCalls();
  tick();
}

// Waiting calls come from the state (a visit answers them); the call message adds the time.
function renderCalls() {
  const box = $("breakout-calls");
  if (!box) return;
  box.replaceChildren();
  for (const room of view ? view.rooms : []) {
    for (const id of room.calls) {
      const at = calls.get(id);
      const when = at ? " · " + new Date(at).toLocaleTimeString() : "";
      box.append(el("li", "Facilitator please: " + nameOf(id) + " in " + room.name + when, "breakout-call"));
    }
  }
}

function render() {
  if (!ctx) return;
  if (isStaff()) {
    renderHand();
    renderStaff();
  } else {
    renderBanner();
  }
}

function start(event) {
  event.preventDefault();
  const mode = $("breakout-mode").value;
  const message = {
    type: "breakouts_start",
    mode,
    prompt: $("breakout-prompt-text").value.trim(),
    minutes: Number($("breakout-minutes").value),
  };
  if (mode === "random") message.rooms = Number($("breakout-count").value);
  if (mode === "hand") {
    const count = Math.max(1, Math.min(20, Number($("breakout-count").value) || 1));
    const assign = Array.from({ length: count }, () => []);
    for (const select of $("breakout-hand").querySelectorAll("select")) assign[Number(select.value) - 1].push(select.dataset.member);
    message.assign = assign;
  }
  ctx.send(message);
}

export const breakouts = {
  setup(options) {
    ctx = options;
    const form = $("breakout-form");
    if (form) {
      form.addEventListener("submit", start);
      $("breakout-mode").addEventListener("change", renderHand);
      $("breakout-count").addEventListener("input", renderHand);
    }
    const broadcast = $("breakout-broadcast-form");
    if (broadcast) {
      broadcast.addEventListener("submit", (event) => {
        event.preventDefault();
        const text = $("breakout-broadcast-text").value.trim();
        if (!text) return;
        ctx.send({ type: "breakout_broadcast", text });
        $("breakout-broadcast-text").value = "";
      });
    }
    const recall = $("breakout-recall");
    if (recall) recall.addEventListener("click", () => ctx.send({ type: "breakouts_recall" }));
    const main = $("breakout-main");
    if (main) main.addEventListener("click", () => ctx.send({ type: "breakout_visit", breakout_id: null }));
    const call = $("breakout-call");
    if (call) call.addEventListener("click", () => ctx.send({ type: "facilitator_call" }));
    setInterval(tick, 1000);
  },

  // The state from a snapshot (null: no breakouts open, or not admitted yet).
  update(state) {
    view = state || null;
    render();
  },

  // A breakout message: true when it was one (room.js then renders the rest).
  handle(message) {
    switch (message.type) {
      case "breakouts":
        view = message.breakouts;
        if (message.recalled) news(message.recalled === "timer" ? "Time is up: everyone is back in the main room." : "Everyone is back in the main room.");
        else if (view && view.warning && !isStaff()) news("One minute left in this breakout.");
        render();
        return true;
      case "breakout_broadcast":
        news(message.from_name + " (to every room): " + message.text);
        return true;
      case "facilitator_call":
        calls.set(message.member_id, message.at);
        renderCalls();
        return true;
      default:
        return false;
    }
  },

  // A member as media should place them (their breakout as their space).
  placed(member) {
    return member ? { ...member, space: spaceOf(member) } : member;
  },

  render,
};
