// Room client: one WebSocket to the server (protocol 1), reconnecting with backoff and
// jitter and resuming from the last sequence number it saw. Everything is rendered with
// textContent: chat text and names never become markup.
import { handouts } from "./handouts.js";
import { media } from "./media.js";
import { session } from "./session.js";
import { breakouts } from "./breakouts.js";
import { homeworkMarker } from "./homework.js";
import { mmss } from "./lib/clock.js";
import { $, bind, button, el, statusLine } from "./lib/dom.js";
import { ReconnectingSocket, socketUrl } from "./lib/socket.js";

const page = document.getElementById("room");
if (page) roomPage(page);

function roomPage(root) {
  const role = root.dataset.role;
  const me = root.dataset.me;
  // A family session's support person is a guest like a patient: never shown staff views.
  const isStaff = role !== "participant" && role !== "support_person";
  const canModerate = role === "host" || role === "cohost";
  const state = { seq: null, members: new Map(), room: null, you: null, chat: [], closed: false, clock: null };
  const setStatus = statusLine("status");
  let pendingHelp = null;  // the help press not yet confirmed as stored
  const send = (message) => socket.send(message);

  // Connection ------------------------------------------------------------------------------
  // Multi-node: a socket may be told the room lives on another node ("redirect", then
  // close 4307). Same origin: reconnect there at once, resuming from the same seq. Another
  // origin: cookies do not follow, so the page itself moves there.
  let redirectUrl = null;
  const socket = new ReconnectingSocket({
    url: () => redirectUrl || socketUrl(root.dataset.ws),
    resume: () => ({ last_seq: state.seq }),
    onOpen: () => session.connected(),
    onMessage: (message) => receive(message),
    onClose: closed,
    onRetry: (attempt) => {
      // A node named by a redirect that stays unreachable has gone: ask the page's own again.
      if (attempt > 3) redirectUrl = null;
      setStatus("Connection lost. Reconnecting…", true);
    },
  });
  const GONE = {
    removed: "You have been removed from this session. If you think this is a mistake, call your program.",
    ended: "This session has ended. Thank you for coming.",
    replaced: "This session was opened on another device.",
    disabled: "This account has been disabled. If you think this is a mistake, call your program's administrator.",
    signed_out: "You have been signed out. Sign in again to return to this session.",
    link_inactive: "This link is no longer active. Please call your program for a new one.",
  };
  function closed(meaning) {
    if (GONE[meaning.kind]) {
      gone(GONE[meaning.kind]);
      return "stop";
    }
    if (meaning.kind === "locked") {
      // A locked staff screen opens no room: the password first, then back here.
      location.assign("/unlock?next=" + encodeURIComponent(location.pathname + location.search));
      return "stop";
    }
    if (meaning.refused || state.closed) return "stop";
    // The room moved: no back-off, nobody should notice.
    return meaning.kind === "moved" ? "now" : "backoff";
  }

  // Media starts once this person is in the room, again on every new socket (the server
  // then replaces only this person's connection), and stops when they leave.
  let mediaSocket = null;
  let mediaStarted = false;
  function syncMedia(you) {
    if (!media) return;
    // In a breakout, only the people there are shown (their media is all that arrives).
    media.members([...state.members.values()].map(breakouts.placed), breakouts.placed(you));
    if (you.presence === "admitted" && mediaSocket !== socket.ws) {
      mediaSocket = socket.ws;
      media.start(send, mediaStarted);
      mediaStarted = true;
    }
  }

  function gone(text) {
    if (media) media.stop();
    state.closed = true;
    setStatus(isStaff ? text : "", true);
    if (!isStaff) {
      $("waiting-view").hidden = true;
      $("room-view").hidden = true;
      $("gone-view").hidden = false;
      $("gone-text").textContent = text;
    }
  }

  // Incoming --------------------------------------------------------------------------------
  function receive(message) {
    if (media && media.handle(message)) return;
    if (typeof message.seq === "number") state.seq = message.seq;
    handouts.receive(message);
    switch (message.type) {
      case "snapshot":
        // A press not yet confirmed as stored goes again on every new connection (the
        // node that took it may have stopped before storing it).
        if (pendingHelp) send(pendingHelp);
        state.room = message.room;
        state.you = message.you;
        state.members = new Map(message.members.map((m) => [m.id, m]));
        state.chat = message.chat;
        state.clock = message.clock;
        breakouts.update(message.breakouts);
        break;
      case "breakouts":
      case "breakout_broadcast":
      case "facilitator_call":
        breakouts.handle(message);
        break;
      case "clock":
        state.clock = message.clock;
        break;
      case "resync":
        if (pendingHelp) send(pendingHelp);
        state.you = message.you;
        break;
      case "member":
        state.members.set(message.member.id, message.member);
        if (message.member.id === me) state.you = message.member;
        break;
      case "room":
        if (state.room) { state.room.state = message.state; state.room.locked = message.locked; }
        break;
      case "chat":
        state.chat.push(message);
        break;
      case "reaction":
        return showReaction(message);
      case "help":
        return showHelp(message);
      case "private_room":
        return showPrivateRoom(message);
      case "float_needed": {
        const roster = (message.roster || []).map((r) => r.name + " (" + r.as + ")").join(", ");
        return notify("No co-facilitator is here to keep the group: call in a float clinician" + (roster ? ": " + roster : " from the on-call roster") + ". The group has been told to take a short break.");
      }
      case "drop_prompt":
        return showDropPrompt(message);
      case "drop_step_logged":
        return showDropStepLogged(message);
      case "help_received":
        if (pendingHelp && message.press_id && message.press_id !== pendingHelp.press_id) return;
        pendingHelp = null;
        $("help-confirm").textContent = "Your clinician has been told. They will contact you privately.";
        return;
      case "redirect":
        return follow(message);
      case "error":
        // "try_again" comes just before the socket closes (the room's node is being
        // replaced): the close handler shows that we are reconnecting.
        if (message.code === "try_again") return;
        if (message.code === "rate_limited") return slowDown(message);
        return setStatus("Not done: " + message.reason, false);
      case "pong":
        return session.onPong(message);
      default:
        return;
    }
    render();
  }

  // The facilitator's "flag concern": raised through the crisis entry point like every
  // other trigger; a high flag pages the on-call supervisor.
  function flagControl(member) {
    const box = el("details", null, "flag");
    box.append(el("summary", "Flag concern"));
    const level = el("select");
    level.setAttribute("aria-label", "Concern level for " + member.name);
    for (const [value, label] of [["moderate", "Moderate: assess in this session"], ["high", "High: needs the supervisor now"]]) {
      const option = el("option", label);
      option.value = value;
      level.append(option);
    }
    const note = el("input");
    note.maxLength = 280;
    note.setAttribute("aria-label", "What you noticed about " + member.name);
    const flag = button("Flag", async () => {
      const response = await fetch("/api/crisis/events", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ patient_id: member.id.split(":")[1], session_id: root.dataset.ws.split("/").pop(), level: level.value, note: note.value }),
      });
      notify(response.ok ? "Concern flagged (" + level.value + "). Do not wait for an acknowledgement to call 911 when danger is imminent." : "The flag was not recorded; call the on-call supervisor.");
      box.open = false;
    });
    flag.setAttribute("aria-label", "Flag concern about " + member.name);
    box.append(level, note, flag);
    return box;
  }

  function follow(message) {
    const target = new URL(message.url);
    if (target.host === location.host) {
      redirectUrl = message.url;
      const page = new URL(message.page);
      history.replaceState(null, "", page.pathname + page.search);
      return;
    }
    state.closed = true;
    location.assign(message.page);
  }

  function notify(text) {
    const box = $("notice") || $("status");
    box.textContent = text;
    box.hidden = false;
  }

  function showPrivateRoom(message) {
    const who = state.members.get(message.member_id);
    const name = who ? who.name : "Someone";
    if (!message.open) {
      notify(message.member_id === me ? "You are back with the group." : name + " is back.");
    } else if (message.mine && !isStaff) {
      notify("You are now talking privately with " + message.with_name + ". Nobody else in the group can see or hear you. Take your time; you will come back to the group afterwards.");
    } else if (message.mine) {
      notify("You are in a private room with " + name + ". The group cannot see or hear either of you.");
      // An observing supervisor sends nothing in the group; in the private room they must
      // be seen and heard, so their media connection starts over with camera and microphone.
      if (role === "observer" && media) media.start(send, true);
    } else if (message.short_break) {
      notify("Let's take a short break. The group will continue in a few minutes.");
    } else {
      notify(isStaff ? name + " is in a private room; you are keeping the group and the clock." : name + " stepped out for a moment.");
    }
  }

  function showHelp(message) {
    const box = $("help-alerts");
    if (!box) return;
    const alert = el("div", null, "help-alert");
    alert.setAttribute("role", "alert");
    alert.append(el("strong", message.name + " pressed “I need help”"));
    if (message.text) alert.append(el("span", ": " + message.text));
    alert.append(el("span", " · " + new Date(message.at).toLocaleTimeString(), "muted"));
    box.prepend(alert);
  }

  // Dropped connection of a flagged patient (facilitators only): call back, then the backup
  // and alternate phones, then the support person, then a welfare check through the
  // patient's local dispatch line.
  const drops = new Map();
  function telHref(number) {
    const digits = String(number).replace(/[^0-9]/g, "");
    if (String(number).trim().startsWith("+")) return "tel:+" + digits;
    return digits.length === 10 ? "tel:+1" + digits : "tel:" + digits;
  }
  function showDropPrompt(message) {
    const box = $("drop-prompts");
    if (!box) return;
    let prompt = drops.get(message.member_id);
    if (message.status === "reconnected") {
      if (!prompt) return;
      prompt.stopped = true;
      prompt.status.textContent = message.name + " reconnected at " + new Date(message.at).toLocaleTimeString() + ". The countdown has stopped.";
      prompt.node.classList.add("reconnected");
      prompt.countdown.textContent = "";
      return;
    }
    if (prompt) prompt.node.remove();
    const node = el("div", null, "drop-prompt");
    node.setAttribute("role", "alert");
    node.dataset.member = message.member_id;
    node.append(el("strong", message.name + "'s connection dropped (open crisis event)"));
    const status = el("p", "Act now, in this order:", "drop-status");
    const countdown = el("p", "", "drop-countdown");
    countdown.setAttribute("role", "timer");
    const list = el("ol", null, "drop-steps");
    const started = Date.parse(message.at) / 1000;
    prompt = { node, status, countdown, steps: message.steps, started, stopped: false, items: new Map(), eventId: message.event_id };
    for (const step of message.steps) {
      const item = el("li", null, "drop-step");
      item.dataset.action = step.action;
      const text = el("span", step.text);
      item.append(text);
      if (step.skipped) {
        // Nobody can take this step (no phone, no release): the server logged it as skipped.
        const logged = el("span", "skipped: " + step.skipped + (step.step_no ? " (logged, step #" + step.step_no + ")" : ""), "drop-logged muted");
        item.classList.add("logged", "skipped");
        item.append(" ", logged);
        prompt.items.set(step.action, { item, logged });
        list.append(item);
        continue;
      }
      const phones = step.phones || (step.phone ? [step.phone] : []);
      phones.forEach((number, index) => {
        const call = el("a", phones.length > 1 ? "Call " + (index + 1) : "Call", "button tel");
        call.href = telHref(number);
        item.append(" ", call);
      });
      const taken = button("Done", () => send({ type: "drop_step", event_id: message.event_id, action: step.action, outcome: "taken" }));
      const reason = el("input");
      reason.type = "text";
      reason.maxLength = 500;
      reason.placeholder = "reason to skip";
      reason.setAttribute("aria-label", "Reason to skip: " + step.text);
      const skipped = button("Skip", () => {
        if (!reason.value.trim()) { reason.focus(); return; }
        send({ type: "drop_step", event_id: message.event_id, action: step.action, outcome: "skipped", reason: reason.value.trim() });
      });
      const logged = el("span", "", "drop-logged muted");
      item.append(" ", taken, " ", reason, " ", skipped, " ", logged);
      prompt.items.set(step.action, { item, logged });
      list.append(item);
    }
    const link = el("a", "Open the crisis event");
    link.href = "/crisis/events/" + encodeURIComponent(message.event_id);
    node.append(status, countdown, list, link);
    box.prepend(node);
    drops.set(message.member_id, prompt);
    tickDrops();
  }
  function showDropStepLogged(message) {
    for (const prompt of drops.values()) {
      if (prompt.eventId !== message.event_id) continue;
      const entry = prompt.items.get(message.action);
      if (entry) {
        entry.logged.textContent = message.outcome + " (" + message.by + ", step #" + message.step_no + ")";
        entry.item.classList.add("logged");
      }
    }
  }
  function tickDrops() {
    const now = session.serverNow();
    for (const prompt of drops.values()) {
      if (prompt.stopped) continue;
      const elapsed = now - prompt.started;
      let current = prompt.steps[0];
      let next = null;
      for (const step of prompt.steps) {
        if (elapsed >= step.after_s) current = step;
        else if (!next) next = step;
      }
      for (const [action, entry] of prompt.items) entry.item.classList.toggle("current", action === current.action);
      if (next) {
        const left = Math.max(0, Math.ceil(next.after_s - elapsed));
        prompt.countdown.textContent = "Next step in " + mmss(left) + ": " + next.text;
      } else {
        prompt.countdown.textContent = "Now: " + current.text;
      }
    }
  }
  setInterval(tickDrops, 1000);

  function showReaction(message) {
    const who = state.members.get(message.from);
    const text = (who ? who.name : "Someone") + (message.reaction === "thumbs_up" ? " 👍" : " needs a moment");
    const item = el("li", text, "reaction");
    $("chat").append(item);
  }

  // Rendering -------------------------------------------------------------------------------
  function render() {
    const you = state.you;
    if (!you) return;
    syncMedia(you);
    const live = state.room && state.room.state === "live";
    setStatus(state.room && state.room.locked ? "Connected · room locked" : (live ? "Connected · session live" : "Connected"));
    if (!isStaff) {
      const inRoom = you.presence === "admitted" || you.presence === "reconnecting";
      $("waiting-view").hidden = inRoom;
      $("room-view").hidden = !inRoom;
      const hand = $("hand");
      if (hand) {
        hand.textContent = you.hand_raised ? "Lower hand" : "Raise hand";
        hand.setAttribute("aria-pressed", String(you.hand_raised));
      }
      const muted = you.audio_blocked || you.video_blocked;
      const askUnmute = $("ask-unmute");
      if (askUnmute) {
        askUnmute.hidden = !muted;
        askUnmute.disabled = you.unmute_requested;
      }
      const notice = $("notice");
      notice.hidden = !muted;
      notice.textContent = muted ? ("A clinician has " + [you.audio_blocked ? "muted your microphone" : null, you.video_blocked ? "turned off your camera" : null].filter(Boolean).join(" and ") + "." + (askUnmute ? " You can ask to be unmuted." : "")) : "";
    } else {
      const lock = $("lock");
      if (lock && state.room) {
        lock.textContent = state.room.locked ? "Unlock room" : "Lock room";
        lock.setAttribute("aria-pressed", String(state.room.locked));
      }
      const start = $("start");
      if (start) start.disabled = live;
      renderWaiting();
    }
    renderPeople();
    renderChat();
    session.update(state.clock, state.members);
    breakouts.render();
  }

  function person(member, actions) {
    const item = el("li");
    item.dataset.member = member.id;
    item.append(el("span", member.name + (member.id === me ? " (you)" : ""), "person-name"));
    const badges = el("span", null, "badges");
    if (member.role !== "participant") badges.append(el("span", { host: "Clinician", cohost: "Co-facilitator", observer: "Observer", support_person: "Family session guest" }[member.role], "badge"));
    if (member.presence === "reconnecting") badges.append(el("span", "reconnecting…", "badge alert"));
    if (member.hand_raised) badges.append(el("span", "✋ hand raised", "badge alert"));
    if (member.audio_blocked) badges.append(el("span", "muted", "badge"));
    if (member.video_blocked) badges.append(el("span", "video off", "badge"));
    if (isStaff && member.unmute_requested) badges.append(el("span", "asks to be unmuted", "badge alert"));
    const checkin = isStaff && member.staff_info && member.staff_info.checkin;
    if (checkin) {
      // Discreet, staff-only: the patient never sees a risk label.
      if (checkin.level && checkin.level !== "none") {
        badges.append(el("span", checkin.level + " risk screen", "badge level-" + checkin.level));
      }
      for (const flag of checkin.flags || []) badges.append(el("span", flag, "badge alert"));
      if (checkin.private_space === false) badges.append(el("span", "not in a private space", "badge alert"));
      for (const open of checkin.escalations || []) {
        badges.append(el("span", open.kind === "event" ? "escalation open" : "review before the end", "badge alert"));
      }
    }
    const homework = isStaff && homeworkMarker(member);
    if (homework) badges.append(homework);
    item.append(badges);
    // Staff-only: the daily mood check-ins since the patient's last session (numbers, no notes).
    const mood = isStaff && member.staff_info && member.staff_info.mood;
    if (mood && mood.text) item.append(el("span", mood.text, "muted mood-since"));
    if (actions.length) {
      const row = el("span", null, "person-actions");
      for (const [label, message] of actions) {
        const action = button(label, () => send(message));
        action.setAttribute("aria-label", label + " " + member.name);
        row.append(action);
      }
      item.append(row);
    }
    return item;
  }

  function renderWaiting() {
    const list = $("waiting");
    list.replaceChildren();
    const waiting = [...state.members.values()].filter((m) => m.presence === "waiting").sort((a, b) => a.since.localeCompare(b.since));
    for (const member of waiting) {
      const minutes = Math.max(0, Math.round((Date.now() - Date.parse(member.since)) / 60000));
      const item = person(member, canModerate ? [["Admit", { type: "admit", member_id: member.id }]] : []);
      item.querySelector(".badges").append(el("span", "waiting " + minutes + " min", "badge"));
      if (member.staff_info && member.role === "participant") {
        // The patient's latest technology check (no PHI): passed, or which steps need help.
        const tech = member.staff_info.techcheck;
        const badge = tech ? tech.summary + " · " + new Date(tech.at).toLocaleDateString([], { month: "short", day: "numeric" }) : "No tech check yet";
        item.querySelector(".badges").append(el("span", badge, "badge techcheck-badge" + (tech && !tech.passed ? " alert" : "")));
      }
      const consents = (member.staff_info && member.staff_info.consents) || [];
      if (consents.length) {
        const text = "Consents: " + consents.map((c) => c.kind.replace(/_/g, " ") + " v" + c.version + " (" + c.at.slice(0, 10) + ")").join(", ");
        item.append(el("span", text, "muted consents"));
      }
      list.append(item);
    }
    $("waiting-empty").hidden = waiting.length > 0;
    const admitAll = $("admit-all");
    if (admitAll) admitAll.disabled = waiting.length === 0;  // nothing to do: not a silent no-op
    const select = $("chat-to");
    if (select) {
      const keep = select.value;
      select.replaceChildren(el("option", "Everyone in the room"));
      select.firstChild.value = "room";
      for (const member of state.members.values()) {
        if (member.role === "participant" && member.presence !== "left") {
          const option = el("option", "Privately to " + member.name);
          option.value = member.id;
          select.append(option);
        }
      }
      select.value = [...select.options].some((o) => o.value === keep) ? keep : "room";
    }
  }

  function renderPeople() {
    const list = $("people");
    list.replaceChildren();
    const present = [...state.members.values()].filter((m) => m.presence === "admitted" || m.presence === "reconnecting");
    present.sort((a, b) => (a.role === "participant") - (b.role === "participant") || a.name.localeCompare(b.name));
    for (const member of present) {
      const actions = [];
      if (canModerate && (member.role === "participant" || member.role === "support_person")) {
        actions.push([member.audio_blocked ? "Allow audio" : "Mute", { type: "mute", member_id: member.id, audio: !member.audio_blocked }]);
        actions.push([member.video_blocked ? "Allow video" : "Stop video", { type: "mute", member_id: member.id, video: !member.video_blocked }]);
        if (member.hand_raised && member.role === "participant") actions.push(["Lower hand", { type: "lower_hand", member_id: member.id }]);
        actions.push(["Remove", { type: "remove", member_id: member.id }]);
      }
      if ((canModerate || role === "observer") && member.role === "participant") {
        if (!member.away) actions.push(["Private room with", { type: "private_room", member_id: member.id, open: true }]);
        else if (state.you && member.space === state.you.space) actions.push(["Back to the group:", { type: "private_room", member_id: member.id, open: false }]);
      }
      const item = person(member, actions);
      if (isStaff && role !== "observer" && member.role === "participant") item.append(flagControl(member));
      if (member.away) item.querySelector(".badges").append(el("span", isStaff ? "in a private room" : "stepped out", "badge"));
      list.append(item);
    }
  }

  function renderChat() {
    const log = $("chat");
    log.replaceChildren();
    for (const message of state.chat) {
      let label = message.from_name;
      if (message.channel === "private") {
        const thread = state.members.get(message.thread);
        label += isStaff ? " (private with " + (thread ? thread.name : "a patient") + ")" : " (private)";
      } else if (message.channel === "note") {
        label += " (staff note)";
      } else if ("breakout" in message) {
        // Said while breakouts were open: where (staff see every breakout's chat).
        label += " (" + (message.breakout ? message.breakout.name : "main room") + ")";
      }
      const item = el("li", null, message.channel);
      item.append(el("strong", label + ": "), el("span", message.text));
      log.append(item);
    }
    log.scrollTop = log.scrollHeight;
  }

  // Controls --------------------------------------------------------------------------------
  bind("start", () => send({ type: "start" }));
  bind("lock", () => send({ type: "lock", locked: !(state.room && state.room.locked) }));
  bind("admit-all", () => send({ type: "admit_all" }));
  bind("end", () => { if (confirm("End the session for everyone?")) send({ type: "end" }); });
  bind("hand", () => send({ type: "raise_hand", raised: !(state.you && state.you.hand_raised) }));
  bind("react-thumbs", () => send({ type: "react", reaction: "thumbs_up" }));
  bind("react-moment", () => send({ type: "react", reaction: "need_a_moment" }));
  bind("ask-unmute", () => send({ type: "ask_unmute" }));
  // The last text sent from each box: a message the server held back for sending too
  // fast goes back into its box (if still empty) to send again, instead of vanishing.
  let lastSent = null;
  function bindForm(formId, textId, build) {
    const form = $(formId);
    if (!form) return;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $(textId).value.trim();
      if (!text) return;
      send(build(text));
      lastSent = { box: textId, text };
      $(textId).value = "";
    });
  }
  function slowDown(message) {
    const seconds = Math.max(1, Math.ceil(message.retry_after_s || 1));
    if (message.kind === "chat") {
      const box = lastSent && $(lastSent.box);
      if (box && !box.value) box.value = lastSent.text;
      setStatus("That message was not sent: please wait " + seconds + " s and send it again.", false);
    } else {
      setStatus("Reactions are paused for a few seconds.", false);
    }
  }
  bindForm("chat-form", "chat-text", (text) => ({ type: "chat", to: $("chat-to").value, text }));
  bindForm("note-form", "note-text", (text) => ({ type: "note", text }));
  const helpForm = $("help-form");
  if (helpForm) {
    helpForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const id = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/[^A-Za-z0-9_-]/g, "");
      pendingHelp = { type: "help", text: $("help-text").value.trim(), press_id: id };
      send(pendingHelp);
      $("help-confirm").textContent = "Sending…";
    });
  }

  // Waiting times count up while nothing else changes.
  setInterval(() => { if (isStaff && state.you) renderWaiting(); }, 30000);
  session.setup({ role, me, send, ping: () => socket.ping() });
  breakouts.setup({ role, me, send, notify, members: () => state.members, serverNow: session.serverNow });
  handouts.setup({ role, send });
  socket.connect();
}
