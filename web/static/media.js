// Media client: one RTCPeerConnection to the server's SFU. The server makes every offer
// (it adds and removes other members' tracks); this page answers, sending its camera and
// microphone on the m-lines the offer names in `publish`. Names come from the room's
// member list and are rendered with textContent only.
import { $, bind } from "./lib/dom.js";

const host = document.getElementById("media");
// What the room script uses; null on a page without the media panel.
export const media = host ? mediaClient(host) : null;
// The browser tests read the media statistics from here.
if (media) window.IOPMedia = media;

function mediaClient(host) {
  const videoKbps = Number(host.dataset.videoKbps || 500);
  const state = {
    send: null, pc: null, local: null, screen: null, tracks: {}, publish: {}, tiles: new Map(),
    audioOnly: false, micOn: true, camOn: true, names: new Map(), speaker: null, started: false,
    poor: 0, restartTimer: null, sharing: false, members: new Map(), mySpace: null, mayShare: host.dataset.mayShare === "true",
  };
  function say(text) {
    // Before joining the device check reports it; in the room the media panel does.
    const n = (!state.started && $("test-result")) || $("media-message");
    if (n) n.textContent = text;
  }

  // Devices ---------------------------------------------------------------------------------
  async function openDevices() {
    if (state.local) return state.local;
    const audioId = $("mic-select") && $("mic-select").value;
    const videoId = $("cam-select") && $("cam-select").value;
    const video = { width: { ideal: 640, max: 640 }, height: { ideal: 360, max: 360 }, frameRate: { max: 30 } };
    if (videoId) video.deviceId = { exact: videoId };
    const audio = audioId ? { deviceId: { exact: audioId } } : true;
    try {
      state.local = await navigator.mediaDevices.getUserMedia({ audio, video });
    } catch (err) {
      try {
        state.local = await navigator.mediaDevices.getUserMedia({ audio });
        say("No camera could be opened; you are joining with audio only.");
      } catch (err2) {
        say(err2 && err2.name === "NotAllowedError"
          ? "Your browser is blocking the camera and microphone. Allow them for this site (the camera icon in the address bar), then reload the page."
          : "No camera or microphone was found. You can still see and hear the group; call your program if you need help.");
        state.local = new MediaStream();
      }
    }
    return state.local;
  }

  async function listDevices() {
    const mic = $("mic-select"), cam = $("cam-select");
    if (!mic || !cam || !navigator.mediaDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const [select, kind] of [[mic, "audioinput"], [cam, "videoinput"]]) {
      const chosen = select.value;
      select.replaceChildren();
      devices.filter((d) => d.kind === kind).forEach((d, i) => {
        const option = document.createElement("option");
        option.value = d.deviceId;
        option.textContent = d.label || (kind === "audioinput" ? "Microphone " : "Camera ") + (i + 1);
        select.append(option);
      });
      if (chosen) select.value = chosen;
    }
  }

  // Device check before joining: preview, level meter and pickers.
  async function deviceCheck() {
    const stream = await openDevices();
    await listDevices();
    const preview = $("preview");
    if (preview) { preview.srcObject = stream; preview.hidden = false; }
    const meter = $("mic-level");
    if (meter && stream.getAudioTracks().length && window.AudioContext) {
      const ctx = new AudioContext();
      const analyser = ctx.createAnalyser();
      ctx.createMediaStreamSource(stream).connect(analyser);
      const data = new Uint8Array(analyser.fftSize);
      const tick = () => {
        analyser.getByteTimeDomainData(data);
        let peak = 0;
        for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
        meter.value = Math.min(100, peak);
        if (!state.started) requestAnimationFrame(tick);
      };
      tick();
    }
    if (stream.getVideoTracks().length && stream.getAudioTracks().length) say("Your camera and microphone work.");
  }

  async function changeDevice() {
    if (state.local) state.local.getTracks().forEach((t) => t.stop());
    state.local = null;
    await deviceCheck();
    if (state.pc) attachLocal();
  }

  // Negotiation -----------------------------------------------------------------------------
  async function start(send, restart) {
    state.send = send;
    await openDevices();
    if (restart && state.pc) { state.pc.close(); state.pc = null; }
    state.started = true;
    host.hidden = false;
    send({ type: "media_join", restart: Boolean(restart), receive_video: !state.audioOnly });
  }

  function newPeerConnection(iceServers) {
    const pc = new RTCPeerConnection({
      iceServers: iceServers || [], bundlePolicy: "max-bundle",
      iceTransportPolicy: host.dataset.relayOnly === "true" ? "relay" : "all",
    });
    pc.addEventListener("track", renderTiles);
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== state.pc) return;  // a connection already replaced (e.g. by a room move)
      const s = pc.connectionState;
      markSelf(s === "connected" ? "" : "reconnecting");
      clearTimeout(state.restartTimer);
      if (s === "failed" || s === "disconnected") {
        // A network change (Wi-Fi to cellular): a fresh connection, nobody else renegotiates.
        state.restartTimer = setTimeout(() => {
          if (pc === state.pc) start(state.send, true);
        }, s === "failed" ? 0 : 3000);
      }
    });
    return pc;
  }

  function attachLocal() {
    const pc = state.pc;
    const audio = state.local.getAudioTracks()[0] || null;
    const video = state.camOn ? state.local.getVideoTracks()[0] || null : null;
    for (const t of pc.getTransceivers()) {
      if (t.mid === null) continue;
      let track;
      if (t.mid === state.publish.audio) track = audio;
      else if (t.mid === state.publish.video) track = video;
      else if (t.mid === state.publish.screen) track = state.sharing && state.screen ? state.screen.getVideoTracks()[0] : null;
      else continue;
      t.sender.replaceTrack(track);
      t.direction = track ? "sendonly" : "inactive";
      if (track) track.enabled = t.mid === state.publish.audio ? state.micOn : true;
    }
  }

  async function onOffer(message) {
    if (!state.pc) state.pc = newPeerConnection(message.ice_servers);
    const pc = state.pc;
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    state.tracks = message.tracks;
    state.publish = message.publish;
    attachLocal();
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    state.send({ type: "media_answer", sdp: pc.localDescription.sdp });
    for (const t of pc.getTransceivers()) {
      if (t.mid === state.publish.video && t.sender.track) {
        const params = t.sender.getParameters();
        if (!params.encodings || !params.encodings.length) params.encodings = [{}];
        params.encodings[0].maxBitrate = videoKbps * 1000;
        t.sender.setParameters(params).catch(() => {});
      }
    }
    renderTiles();
  }

  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  // Tiles -----------------------------------------------------------------------------------
  function tile(memberId) {
    let entry = state.tiles.get(memberId);
    if (entry) return entry;
    const node = document.createElement("figure");
    node.className = "tile";
    node.dataset.member = memberId;
    const video = document.createElement("video");
    video.autoplay = true; video.playsInline = true;
    const caption = document.createElement("figcaption");
    const badges = document.createElement("span");
    badges.className = "badges";
    node.append(video, caption, badges);
    $("tiles").append(node);
    entry = { node, video, caption, badges, stream: new MediaStream() };
    video.srcObject = entry.stream;
    state.tiles.set(memberId, entry);
    return entry;
  }

  function renderTiles() {
    const pc = state.pc;
    const self = tile("self");
    self.caption.textContent = "You";
    self.video.muted = true;
    if (state.local && self.video.srcObject !== state.local) self.video.srcObject = state.local;
    const wanted = new Set(["self"]);
    if (pc) {
      for (const t of pc.getTransceivers()) {
        const info = t.mid !== null && state.tracks[t.mid];
        if (!info || !t.receiver.track) continue;
        // A private room inside the room: only the people in the same space are shown.
        const owner = state.members.get(info.member_id);
        if (owner && (owner.space || null) !== state.mySpace) continue;
        const key = info.source === "screen" ? info.member_id + ":screen" : info.member_id;
        wanted.add(key);
        const entry = tile(key);
        if (!entry.stream.getTracks().includes(t.receiver.track)) entry.stream.addTrack(t.receiver.track);
        const name = state.names.get(info.member_id) || "Participant";
        entry.caption.textContent = info.source === "screen" ? name + " (screen)" : name;
        entry.node.classList.toggle("screen", info.source === "screen");
      }
    }
    for (const [key, entry] of state.tiles) {
      if (!wanted.has(key)) { entry.node.remove(); state.tiles.delete(key); }
    }
    for (const [key, entry] of state.tiles) entry.node.classList.toggle("speaking", key === state.speaker);
  }

  function markSelf(badge) { const s = state.tiles.get("self"); if (s) s.badges.textContent = badge; }

  function members(list, you) {
    state.members = new Map(list.map((m) => [m.id, m]));
    state.mySpace = (you && you.space) || null;
    for (const m of list) {
      state.names.set(m.id, m.name);
      const entry = state.tiles.get(m.id);
      if (!entry) continue;
      const marks = [];
      if (m.audio_blocked) marks.push("muted");
      if (m.hand_raised) marks.push("✋");
      if (m.presence === "reconnecting") marks.push("reconnecting");
      entry.badges.textContent = marks.join(" · ");
    }
    renderTiles();
  }

  // Quality -------------------------------------------------------------------------------
  async function quality() {
    const pc = state.pc;
    if (!pc) return;
    let lost = 0, received = 0, rtt = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") { lost += s.packetsLost || 0; received += s.packetsReceived || 0; }
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime) rtt = s.currentRoundTripTime;
    });
    const loss = received ? lost / (lost + received) : 0;
    const label = loss > 0.08 || rtt > 0.6 ? "poor" : loss > 0.02 || rtt > 0.3 ? "fair" : "good";
    const q = $("quality");
    if (q) { q.textContent = "Connection: " + label; q.dataset.level = label; }
    state.poor = label === "poor" ? state.poor + 1 : 0;
    const offer = $("audio-only-offer");
    if (offer) offer.hidden = !(state.poor >= 2 && !state.audioOnly);
  }
  setInterval(quality, 3000);

  // Controls --------------------------------------------------------------------------------
  function toggle(id, on, onLabel, offLabel) {
    const b = $(id);
    if (!b) return;
    b.setAttribute("aria-pressed", String(!on));
    b.textContent = on ? onLabel : offLabel;
  }
  bind("mic-toggle", () => {
    state.micOn = !state.micOn;
    state.local && state.local.getAudioTracks().forEach((t) => { t.enabled = state.micOn; });
    toggle("mic-toggle", state.micOn, "Mute microphone", "Unmute microphone");
  });
  bind("cam-toggle", () => {
    state.camOn = !state.camOn;
    if (state.pc) attachLocal();
    toggle("cam-toggle", state.camOn, "Turn camera off", "Turn camera on");
  });
  function setAudioOnly(on) {
    state.audioOnly = on;
    if (state.send) state.send({ type: "media_update", receive_video: !on });
    toggle("audio-only", !on, "Audio only", "Show video again");
    const offer = $("audio-only-offer");
    if (offer) offer.hidden = true;
  }
  bind("audio-only", () => setAudioOnly(!state.audioOnly));
  bind("audio-only-accept", () => setAudioOnly(true));
  bind("screen-toggle", async () => {
    if (!state.sharing) {
      try { state.screen = await navigator.mediaDevices.getDisplayMedia({ video: true }); }
      catch (err) { say("Screen sharing was cancelled."); return; }
      state.screen.getVideoTracks()[0].addEventListener("ended", () => { if (state.sharing) stopShare(); });
      state.sharing = true;
      state.send({ type: "media_update", screen: true });
    } else stopShare();
    toggle("screen-toggle", !state.sharing, "Share screen", "Stop sharing");
  });
  function stopShare() {
    state.sharing = false;
    if (state.screen) state.screen.getTracks().forEach((t) => t.stop());
    state.screen = null;
    if (state.pc) attachLocal();
    state.send({ type: "media_update", screen: false });
    toggle("screen-toggle", true, "Share screen", "Stop sharing");
  }
  for (const id of ["mic-select", "cam-select"]) { const s = $(id); if (s) s.addEventListener("change", changeDevice); }
  bind("test-media", deviceCheck);
  // The page shows the button disabled until this script can act on a tap: on a slow
  // phone a tap before then would otherwise be lost with no word of why.
  if ($("test-media")) $("test-media").disabled = false;

  function handle(message) {
    switch (message.type) {
      case "media_offer": onOffer(message).catch((err) => say("Video could not start (" + err.name + "). Reconnecting…")); return true;
      case "speaker": state.speaker = message.member_id; renderTiles(); return true;
      case "screen_allowed":
        state.mayShare = message.allowed;
        if ($("screen-toggle")) $("screen-toggle").hidden = !message.allowed;
        return true;
      case "error":
        if (message.code === "forbidden" || message.code === "busy") { state.sharing = false; say(message.reason); }
        return false;
      default: return false;
    }
  }

  function stop() {
    if (state.pc) state.pc.close();
    state.pc = null;
    if (state.local) state.local.getTracks().forEach((t) => t.stop());
    state.local = null;
  }

  return {
    start, handle, members, stop,
    stats: async () => {
      const out = [];
      if (!state.pc) return out;
      const report = await state.pc.getStats();
      report.forEach((s) => {
        if (s.type === "inbound-rtp") {
          const codec = report.get(s.codecId);
          out.push({ kind: s.kind, framesDecoded: s.framesDecoded || 0, packetsReceived: s.packetsReceived || 0, codec: codec ? codec.mimeType : "" });
        }
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
          const local = report.get(s.localCandidateId);
          out.push({ kind: "path", candidateType: local ? local.candidateType : "unknown" });
        }
      });
      return out;
    },
  };
}
