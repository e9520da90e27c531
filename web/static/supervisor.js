// Supervisor dashboard client: one WebSocket (/ws/dashboard, protocol 1) that says hello,
// gets a full snapshot (again after every reconnect, with backoff and jitter) and then
// pushed changes. Deadlines count down from the server's times corrected for this
// device's clock offset (measured from ping round trips, as the room's session clock is).
// Names and levels are rendered with textContent only.
(function () {
  "use strict";
  const root = document.getElementById("supervisor");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const events = new Map();
  let sessions = [];
  let you = null;
  let socket = null;
  let attempt = 0;
  let heartbeat = null;
  let offset = 0; // server time minus local time, in seconds
  const samples = [];
  let refs = 0;
  const pending = new Map(); // ref -> element that shows the answer

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  const serverNow = () => Date.now() / 1000 + offset;
  function clockText(seconds) {
    const s = Math.max(0, Math.floor(Math.abs(seconds)));
    const m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }
  function setStatus(text, offline) {
    const status = $("dash-status");
    status.textContent = text;
    status.classList.toggle("offline", Boolean(offline));
  }
  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }
  function act(message, answerEl) {
    refs += 1;
    const ref = "r" + refs;
    if (answerEl) {
      pending.set(ref, answerEl);
      answerEl.textContent = "Sending…";
    }
    if (!send({ ...message, ref })) {
      pending.delete(ref);
      if (answerEl) answerEl.textContent = "Not connected: try again in a moment.";
    }
  }

  // Connection ------------------------------------------------------------------------------
  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.ws;
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      attempt = 0;
      send({ type: "hello", protocol: 1 });
      ping();
      heartbeat = setInterval(ping, 10000);
    });
    socket.addEventListener("message", (event) => receive(JSON.parse(event.data)));
    socket.addEventListener("close", (event) => {
      clearInterval(heartbeat);
      // Close codes: rooms/closecodes.py (CloseCode); the reason text is never branched on.
      if (event.code === 4401) return setStatus("You have been signed out. Sign in again to watch this dashboard.", true);
      if (event.code === 4402) return setStatus("This account has been disabled.", true);
      if (event.code === 4403) return setStatus("Not allowed to watch this dashboard.", true);
      attempt += 1;
      const delay = Math.min(15000, 500 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2);
      setStatus("Connection lost. Reconnecting… (events keep paging by webhook)", true);
      setTimeout(connect, delay);
    });
  }
  function ping() {
    send({ type: "ping", t: Date.now() / 1000 });
  }

  function receive(message) {
    if (message.type === "snapshot") {
      you = message.you;
      if (samples.length === 0) offset = message.server_time - Date.now() / 1000;
      events.clear();
      for (const ev of message.events) events.set(ev.id, ev);
      sessions = message.sessions;
      setStatus("Live. Updated " + new Date().toLocaleTimeString() + ".", false);
      renderAll();
    } else if (message.type === "event") {
      const ev = message.event;
      if (ev.state === "closed") events.delete(ev.id);
      else events.set(ev.id, ev);
      renderAll();
    } else if (message.type === "sessions") {
      sessions = message.sessions;
      renderSessions();
    } else if (message.type === "pong") {
      const rtt = Date.now() / 1000 - message.t;
      samples.push({ rtt, offset: message.server_time - (message.t + rtt / 2) });
      if (samples.length > 8) samples.shift();
      offset = samples.reduce((best, s) => (s.rtt < best.rtt ? s : best)).offset;
    } else if (message.type === "done" || message.type === "error") {
      const target = pending.get(message.ref);
      pending.delete(message.ref);
      if (target) target.textContent = message.type === "done" ? "Done." : "Not done: " + message.reason;
      else if (message.type === "error") setStatus("Refused: " + message.reason, false);
    }
  }

  // Events ------------------------------------------------------------------------------------
  const LEVEL = { high: "HIGH", moderate: "MODERATE" };
  const STATE = { open: "waiting for acknowledgement", acknowledged: "acknowledged", closed: "signed off" };
  const TRIGGER = { help_button: "pressed “I need help”", screening: "check-in screen", clinician_flag: "flagged by staff", silence: "went silent" };

  function sortedEvents() {
    const rank = (ev) => (ev.state === "open" ? 0 : 1) * 10 + (ev.level === "high" ? 0 : 1);
    return [...events.values()].sort((a, b) => rank(a) - rank(b) || a.raised_at.localeCompare(b.raised_at));
  }
  function who(ev) {
    return ev.patient_name || "A patient";
  }

  // The event page (safety panel: confirmed location, phones, local emergency numbers)
  // opens beside the dashboard, which keeps watching and sounding while it is read.
  function openEventLink(ev) {
    const link = el("a", "Open event: location and local emergency numbers", "button open-event");
    link.append(el("span", " (opens in a new tab)", "sr-only"));
    link.href = "/crisis/events/" + encodeURIComponent(ev.id);
    link.target = "_blank";
    link.rel = "noopener";
    return link;
  }
  function joinLink(ev) {
    const join = el("a", "Join the session", "button");
    join.href = "/rooms/" + encodeURIComponent(ev.session_id);
    return join;
  }
  // Rooms admit their own clinicians and observing supervisors; admins are not in them.
  const mayJoin = () => !you || you.role !== "admin";

  function eventItem(ev) {
    const item = el("li", null, "event level-" + ev.level);
    item.dataset.id = ev.id;
    const title = el("h3");
    title.append(el("span", LEVEL[ev.level] || ev.level, "badge " + ev.level), " ", el("span", who(ev) + " · " + ev.session_title + " · " + (TRIGGER[ev.trigger] || ev.trigger)));
    item.append(title);
    const facts = el("p");
    facts.append(el("span", STATE[ev.state] || ev.state), " · raised ", el("span", "", "age"), " ago");
    if (ev.next_deadline) facts.append(" · ", el("span", "", "timer"));
    if (ev.acknowledged_by) facts.append(" · acknowledged by ", el("span", ev.acknowledged_by.name));
    if (ev.assigned_to && (!ev.acknowledged_by || ev.assigned_to.id !== ev.acknowledged_by.id)) facts.append(" · with ", el("span", ev.assigned_to.name));
    item.append(facts);
    const answer = el("p", "", "event-msg");
    answer.setAttribute("role", "status");
    const actions = el("div", null, "actions");
    actions.append(openEventLink(ev));
    if (ev.state === "open") {
      const ack = el("button", "Acknowledge", "primary");
      ack.type = "button";
      ack.addEventListener("click", () => act({ type: "ack", event_id: ev.id }, answer));
      actions.append(ack);
    }
    const mine = ev.assigned_to && you && ev.assigned_to.id === you.id;
    if (!mine) {
      const take = el("button", "Take over");
      take.type = "button";
      take.addEventListener("click", () => act({ type: "take_over", event_id: ev.id }, answer));
      actions.append(take);
    }
    if (mayJoin()) actions.append(joinLink(ev));
    const others = ev.assignable.filter((p) => !you || p.id !== you.id);
    if (ev.state !== "open" && others.length) {
      const select = el("select");
      select.setAttribute("aria-label", "Reassign to");
      for (const person of others) {
        const option = el("option", person.name + " (" + person.role.replace("_", " ") + ")");
        option.value = person.id;
        select.append(option);
      }
      const reassign = el("button", "Reassign");
      reassign.type = "button";
      reassign.addEventListener("click", () => act({ type: "reassign", event_id: ev.id, staff_id: select.value }, answer));
      actions.append(select, reassign);
    }
    const note = el("input");
    note.type = "text";
    note.maxLength = 4000;
    note.setAttribute("aria-label", "Note for the timeline");
    note.placeholder = "Note for the timeline";
    const addNote = el("button", "Add note");
    addNote.type = "button";
    addNote.addEventListener("click", () => {
      if (!note.value.trim()) return;
      act({ type: "note", event_id: ev.id, text: note.value }, answer);
      note.value = "";
    });
    actions.append(note, addNote);
    if (ev.state === "acknowledged") {
      const signOff = el("button", "Sign off");
      signOff.type = "button";
      signOff.addEventListener("click", () => act({ type: "sign_off", event_id: ev.id }, answer));
      actions.append(signOff);
    }
    item.append(actions, answer);
    return item;
  }

  function renderEvents() {
    const list = $("events");
    const keep = new Map();
    for (const node of list.children) keep.set(node.dataset.id, node);
    const ordered = sortedEvents();
    const fresh = [];
    for (const ev of ordered) {
      const signature = JSON.stringify(ev);
      let node = keep.get(ev.id);
      // An unchanged event keeps its node, so a note being typed is not lost.
      if (!node || node.dataset.signature !== signature) {
        const answer = node ? node.querySelector(".event-msg").textContent : "";
        node = eventItem(ev);
        node.querySelector(".event-msg").textContent = answer;
        node.dataset.signature = signature;
      }
      fresh.push(node);
    }
    list.replaceChildren(...fresh);
    $("events-empty").hidden = ordered.length > 0;
    $("events-count").textContent = ordered.length ? String(ordered.length) : "";
  }

  function renderSessions() {
    const body = $("sessions");
    body.replaceChildren();
    for (const s of sessions) {
      const row = el("tr");
      row.dataset.id = s.id;
      const open = [...events.values()].filter((ev) => ev.session_id === s.id);
      const high = open.filter((ev) => ev.level === "high").length;
      const counts = open.length ? high + " high, " + (open.length - high) + " moderate" : "none";
      const link = el("a", "Join as observer");
      link.href = "/rooms/" + encodeURIComponent(s.id);
      const cell = el("td");
      cell.append(link);
      row.append(el("th", s.title), el("td", s.live ? s.room_state : "not opened"), el("td", String(s.in_room), "in-room"), el("td", String(s.waiting), "waiting"), el("td", String(s.staff)), el("td", counts), cell);
      row.firstChild.setAttribute("scope", "row");
      body.append(row);
    }
    $("sessions-table").hidden = sessions.length === 0;
    $("sessions-empty").hidden = sessions.length > 0;
  }

  // The takeover alert: every unacknowledged high event holds the screen until someone
  // acknowledges it (here or anywhere else). They stack newest first, so a help press is
  // seen at once even while an older alert waits, and each has its own acknowledge.
  let alerting = []; // the events on the takeover, newest first
  function takeoverCard(ev) {
    const card = el("li", null, "takeover-card");
    card.dataset.id = ev.id;
    const answer = el("p", "", "event-msg");
    answer.setAttribute("role", "status");
    const ack = el("button", "Acknowledge", "primary");
    ack.type = "button";
    ack.addEventListener("click", () => act({ type: "ack", event_id: ev.id }, answer));
    const take = el("button", "Take over");
    take.type = "button";
    take.addEventListener("click", () => act({ type: "take_over", event_id: ev.id }, answer));
    const actions = el("div", null, "actions");
    actions.append(ack, take);
    if (mayJoin()) actions.append(joinLink(ev));
    card.append(
      el("p", who(ev) + " in " + ev.session_title + ": " + (TRIGGER[ev.trigger] || ev.trigger) + ".", "reason"),
      el("p", "", "timer"),
      openEventLink(ev),
      actions,
      answer,
    );
    return card;
  }
  function renderTakeover() {
    const shown = new Set(alerting.map((ev) => ev.id));
    alerting = [...events.values()]
      .filter((ev) => ev.level === "high" && ev.state === "open")
      .sort((a, b) => b.raised_at.localeCompare(a.raised_at) || a.id.localeCompare(b.id));
    const box = $("takeover");
    const list = $("takeover-list");
    const keep = new Map();
    for (const node of list.children) keep.set(node.dataset.id, node);
    const fresh = [];
    let refocus = null;
    for (const ev of alerting) {
      const signature = JSON.stringify(ev);
      let node = keep.get(ev.id);
      if (!node || node.dataset.signature !== signature) {
        const answer = node ? node.querySelector(".event-msg").textContent : "";
        const focused = node && node.contains(document.activeElement);
        node = takeoverCard(ev);
        node.querySelector(".event-msg").textContent = answer;
        node.dataset.signature = signature;
        if (focused) refocus = node.querySelector("button");
      }
      fresh.push(node);
    }
    list.replaceChildren(...fresh);
    if (refocus) refocus.focus();
    const count = $("takeover-count");
    count.textContent = alerting.length > 1 ? alerting.length + " high-level events are waiting for acknowledgement (newest first)." : "";
    count.hidden = alerting.length < 2;
    box.hidden = alerting.length === 0;
    const arrived = alerting.find((ev) => !shown.has(ev.id));
    if (arrived) list.querySelector('[data-id="' + CSS.escape(arrived.id) + '"] button').focus();
  }

  function renderAll() {
    renderEvents();
    renderSessions();
    renderTakeover();
    tick();
  }

  // Timers ------------------------------------------------------------------------------------
  function deadlineText(ev) {
    const left = Date.parse(ev.next_deadline.due_at) / 1000 - serverNow();
    return left >= 0 ? "acknowledge within " + clockText(left) : "overdue by " + clockText(left) + " (escalating)";
  }
  function tick() {
    for (const node of $("events").children) {
      const ev = events.get(node.dataset.id);
      if (!ev) continue;
      const age = node.querySelector(".age");
      if (age) age.textContent = clockText(serverNow() - Date.parse(ev.raised_at) / 1000);
      const timer = node.querySelector(".timer");
      if (timer && ev.next_deadline) {
        timer.textContent = deadlineText(ev);
        timer.classList.toggle("overdue", Date.parse(ev.next_deadline.due_at) / 1000 < serverNow());
      }
    }
    for (const node of $("takeover-list").children) {
      const ev = events.get(node.dataset.id);
      if (!ev) continue;
      const parts = ["raised " + clockText(serverNow() - Date.parse(ev.raised_at) / 1000) + " ago"];
      if (ev.next_deadline) parts.push(deadlineText(ev));
      const timer = node.querySelector(".timer");
      timer.textContent = parts.join(" · ");
      timer.classList.toggle("overdue", Boolean(ev.next_deadline) && Date.parse(ev.next_deadline.due_at) / 1000 < serverNow());
    }
  }
  setInterval(tick, 1000);

  // Sound: browsers allow audio only after a gesture, so it starts with "Enable sound".
  let audio = null;
  let soundOn = false;
  const toggle = $("sound-toggle");
  toggle.addEventListener("click", () => {
    if (!audio) audio = new (window.AudioContext || window.webkitAudioContext)();
    audio.resume();
    soundOn = !soundOn;
    toggle.setAttribute("aria-pressed", String(soundOn));
    toggle.textContent = soundOn ? "Sound on (turn off)" : "Enable sound";
  });
  function beep() {
    if (!soundOn || !audio || alerting.length === 0) return;
    const now = audio.currentTime;
    for (const start of [0, 0.25]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, now + start);
      gain.gain.exponentialRampToValueAtTime(0.3, now + start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + start + 0.18);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + start);
      osc.stop(now + start + 0.2);
    }
  }
  setInterval(beep, 1500);

  connect();
})();
