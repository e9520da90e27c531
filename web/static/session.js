// The session's structure on screen: the shared clock (corrected for this device's offset
// from the server), the check-in round and the grounding pacer. Everything is computed
// from the server's state, so every screen in the room shows the same time. The room's
// script drives it (setup, connected, update, onPong); it sends through the room's socket.
import { ServerClock, mmss } from "./lib/clock.js";
import { $, el, button as plainButton } from "./lib/dom.js";
import { homeworkMarker } from "./homework.js";

const serverClock = new ServerClock();
let clock = null;
let names = new Map();
let people = new Map();
let role = "participant";
let me = null;
let send = () => {};
let ping = () => {};
let selfStep = null;
const reduceMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

const serverNow = () => serverClock.now();

// A few round trips in a row, so a fresh connection has a good offset within a second.
function burst() {
  for (let i = 0; i < 5; i += 1) setTimeout(ping, i * 250);
}

function at(value) {
  return value ? Date.parse(value) / 1000 : null;
}

function remaining() {
  if (!clock || !clock.phase_started_at) return null;
  const phase = clock.phases[clock.index];
  const until = at(clock.ended_at) || at(clock.paused_at) || serverNow();
  const elapsed = until - at(clock.phase_started_at) - clock.paused_s;
  return phase.minutes * 60 + clock.extension_s - elapsed;
}

function turnRemaining() {
  const round = clock && clock.checkin;
  if (!round || !round.turn_started_at) return null;
  const until = at(clock.paused_at) || serverNow();
  return round.turn_seconds - (until - at(round.turn_started_at) - round.turn_paused_s);
}

function button(label, message, aria) {
  const node = plainButton(label, () => send(message));
  if (aria) node.setAttribute("aria-label", aria);
  return node;
}

// Rendering what changes only with the state ------------------------------------------
function render() {
  const panel = $("clock-panel");
  if (!panel) return;
  panel.hidden = !clock;
  if (!clock) return;
  const phase = clock.phases[clock.index];
  const staff = role === "host" || role === "cohost";
  $("phase-title").textContent = clock.status === "not_started" ? "Not started yet" : phase.title;
  const status = { not_started: "", running: "", paused: "Paused", ended: "Session ended" }[clock.status];
  $("clock-status").textContent = status + (clock.held_by === "cohost" ? " · co-facilitator leading" : "");
  const list = $("phases");
  list.replaceChildren();
  clock.phases.forEach((p, index) => {
    const item = el("li", null, index === clock.index && clock.status !== "not_started" ? "current" : "");
    item.append(el("span", p.title + " · " + p.minutes + " min"));
    if (staff && clock.status !== "ended" && clock.status !== "not_started" && index !== clock.index) {
      item.append(button("Go", { type: "clock", op: "jump", index }, "Go to " + p.title));
    }
    const upcoming = clock.status === "not_started" || index > clock.index;
    if (staff && clock.status !== "ended" && upcoming) {
      item.append(button("+5", { type: "plan", op: "minutes", index, minutes: Math.min(240, p.minutes + 5) }, "Lengthen " + p.title + " by 5 minutes"));
      if (p.minutes > 5) item.append(button("−5", { type: "plan", op: "minutes", index, minutes: p.minutes - 5 }, "Shorten " + p.title + " by 5 minutes"));
      const first = clock.status === "not_started" ? 0 : clock.index + 1;
      if (index > first) {
        const order = [];
        for (let i = first; i < clock.phases.length; i += 1) order.push(i);
        const at = order.indexOf(index);
        [order[at - 1], order[at]] = [order[at], order[at - 1]];
        item.append(button("Move up", { type: "plan", op: "reorder", order }, "Move " + p.title + " earlier"));
      }
      if (clock.phases.length > 1) item.append(button("Drop", { type: "plan", op: "drop", index }, "Drop " + p.title));
    }
    list.append(item);
  });
  const controls = $("clock-controls");
  if (controls) {
    controls.replaceChildren();
    const add = (label, message) => controls.append(button(label, message));
    if (clock.status === "not_started") add("Start the session clock", { type: "clock", op: "start" });
    if (clock.status === "running") add("Pause", { type: "clock", op: "pause" });
    if (clock.status === "paused") add("Resume", { type: "clock", op: "resume" });
    if (clock.status === "running" || clock.status === "paused") {
      if (clock.index > 0) add("Previous phase", { type: "clock", op: "previous" });
      if (clock.index + 1 < clock.phases.length) add("Next phase", { type: "clock", op: "next" });
      add("Extend 5 minutes", { type: "clock", op: "extend", minutes: 5 });
    }
  }
  renderCheckin(phase, staff);
  renderGrounding(phase, staff);
  tick();
}

function renderCheckin(phase, staff) {
  const box = $("checkin");
  const round = clock.checkin;
  box.hidden = !(round && phase.kind === "checkin_round" && clock.status !== "not_started");
  if (box.hidden) return;
  const current = round.current;
  $("speaker").textContent = current ? (names.get(current) || "A member") + " is sharing" : "Everyone has had a turn";
  const speakerHomework = staff && current && homeworkMarker(people.get(current));
  if (speakerHomework) $("speaker").append(" ", speakerHomework);
  const queue = $("queue");
  queue.replaceChildren();
  round.queue.forEach((id, at) => {
    const name = names.get(id) || "A member";
    const item = el("li", name);
    const homework = staff && homeworkMarker(people.get(id));
    if (homework) item.append(" ", homework);
    if (staff) {
      if (at > 0) {
        const order = [...round.queue];
        [order[at - 1], order[at]] = [order[at], order[at - 1]];
        item.append(button("Move up", { type: "checkin", op: "reorder", order }, "Move " + name + " up"));
      }
      item.append(button("Skip", { type: "checkin", op: "skip", member_id: id }, "Skip " + name));
    }
    queue.append(item);
  });
  const actions = $("checkin-actions");
  actions.replaceChildren();
  if (staff && current) {
    actions.append(button("Next speaker", { type: "checkin", op: "next" }));
    actions.append(button("Move to the end", { type: "checkin", op: "to_end", member_id: current }));
  }
  if (!staff && current === me) {
    actions.append(button("I'm done", { type: "checkin", op: "next" }));
    actions.append(button("Pass", { type: "checkin", op: "pass" }));
  }
}

const FIVE_SENSES = [
  "Notice 5 things you can see.",
  "Notice 4 things you can touch.",
  "Notice 3 things you can hear.",
  "Notice 2 things you can smell.",
  "Notice 1 thing you can taste.",
];

function renderGrounding(phase, staff) {
  const box = $("pacer");
  box.hidden = !(phase.kind === "grounding" && clock.status !== "not_started");
  if (box.hidden) return;
  const exercise = (phase.settings && phase.settings.exercise) || "box_breathing";
  $("breathing").hidden = exercise === "five_senses";
  $("senses").hidden = exercise !== "five_senses";
  if (exercise === "five_senses") {
    const step = selfStep !== null ? selfStep : clock.grounding_step;
    $("senses-step").textContent = FIVE_SENSES[Math.min(step, 4)];
    const actions = $("senses-actions");
    actions.replaceChildren();
    if (staff) {
      actions.append(button("Previous step for everyone", { type: "grounding", op: "previous" }));
      actions.append(button("Next step for everyone", { type: "grounding", op: "next" }));
    } else {
      actions.append(plainButton("Next at my own pace", () => { selfStep = Math.min(4, (selfStep ?? clock.grounding_step) + 1); render(); }));
    }
  }
}

// Ticking: only what moves with time ---------------------------------------------------
function tick() {
  if (!clock) return;
  const left = remaining();
  const shown = $("remaining");
  const staff = role === "host" || role === "cohost";
  if (left === null) {
    shown.textContent = mmss(clock.phases[clock.index].minutes * 60);
    shown.dataset.remainingMs = "";
  } else {
    shown.textContent = left < 0 ? "+" + mmss(-left) : mmss(left);
    shown.dataset.remainingMs = String(Math.round(left * 1000));
  }
  const warning = $("clock-warning");
  const running = clock.status === "running";
  let text = "";
  if (running && left !== null && left <= 120 && left > 0) {
    text = staff ? "Two minutes left in this phase." : "About two minutes left in this part.";
  } else if (staff && left !== null && left <= 0 && clock.status !== "ended") {
    text = "Over the plan by " + mmss(-left) + ". Move on when the group is ready.";
  }
  if (warning.textContent !== text) warning.textContent = text;
  warning.className = staff && text ? "prominent" : "gentle";
  const turn = turnRemaining();
  const turnBox = $("turn");
  if (turnBox) {
    turnBox.textContent = turn === null ? "" : (turn > 0 ? mmss(turn) + " left in this turn" : "Turn time is up");
    turnBox.className = turn !== null && turn <= 30 ? "turn cue" : "turn";
  }
  breathe();
}

function breathe() {
  const box = $("breathing");
  if (!box || box.hidden || !clock.phase_started_at) return;
  const phase = clock.phases[clock.index];
  const count = phase.settings && phase.settings.exercise === "box_breathing_3" ? 3 : 4;
  const until = at(clock.paused_at) || serverNow();
  const t = Math.max(0, until - at(clock.phase_started_at) - clock.paused_s);
  const step = Math.floor(t / count) % 4;
  const second = count - Math.floor(t % count);
  const cycle = Math.floor(t / (4 * count)) + 1;
  const words = ["Breathe in", "Hold", "Breathe out", "Hold"];
  // About ten cycles, then rest: the exercise should not go on until someone is dizzy.
  $("breath-cue").textContent = cycle > 10
    ? "Well done. Breathe normally."
    : words[step] + " · " + second + " (breath " + cycle + " of 10)";
  const circle = $("breath-circle");
  circle.dataset.step = String(step);
  circle.classList.toggle("animated", !reduceMotion);
}

export const session = {
  serverNow,
  setup(options) {
    role = options.role;
    me = options.me;
    send = options.send;
    ping = options.ping;
    setInterval(tick, 200);
    setInterval(burst, 30000);
  },
  connected() { burst(); },
  update(state, members) {
    clock = state;
    names = new Map([...members.values()].map((m) => [m.id, m.name]));
    people = members;
    if (clock && clock.phases[clock.index].kind !== "grounding") selfStep = null;
    render();
  },
  onPong(message) { serverClock.onPong(message); },
  remainingMs() { const left = remaining(); return left === null ? null : left * 1000; },
};
// The browser tests read the remaining time from here.
window.IOPSession = session;
