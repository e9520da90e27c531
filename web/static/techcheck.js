// The patient's technology check (/techcheck): browser support, camera and microphone with
// a level meter, a speaker tone, the connection through the real SFU (our own media
// echoed back over /ws/techcheck, measured with getStats) and, where the program runs
// one, the TURN relay. Each problem gets plain advice; the result (states and numbers,
// the browser's family, nothing else) is POSTed to /techcheck/result.
import { $, el } from "./lib/dom.js";

const root = $("techcheck");
const thresholds = JSON.parse(root.dataset.thresholds);
const relayConfigured = root.dataset.relay === "true";
const videoKbps = Number(root.dataset.videoKbps) || 500;
const MEASURE_MS = 6000;
const WARMUP_MS = 1000;  // the sender's bandwidth estimate ramps up before it is measured
const CONNECT_MS = 20000;
const MIC_MS = 8000;
const RELAY_MS = 10000;

const ADVICE = {
  webview: "Open this link in your phone's browser: Safari on an iPhone, Chrome on Android. Apps like Facebook, Instagram or your e-mail app open links in a small browser that cannot do video calls. Tap the ⋯ or share menu and choose “Open in browser”.",
  browser: "This browser cannot do video calls. Use an up-to-date Chrome, Safari, Edge or Firefox: on a phone, the phone's own browser.",
  insecure: "Open the link exactly as your program sent it (it starts with https://).",
  camera_denied: "Allow the camera and microphone: tap the camera or lock icon next to the address and choose Allow, then run the check again. On an iPhone: Settings, Safari, Camera and Microphone, Allow.",
  camera_busy: "Another app is using your camera or microphone. Close other apps (video calls, the camera app), then run the check again. Restarting the phone helps if that is not enough.",
  camera_missing: "We could not find a camera. Use a phone or computer with a camera, or check that it is plugged in and switched on.",
  camera_dark: "Your camera sends no picture. Check nothing covers it and close other apps that use it.",
  microphone: "We could not hear you. Check the microphone is not muted or covered, unplug headphones with a broken microphone, and close other apps that use it.",
  speaker: "Turn the volume up and check the phone is not on silent. If you use headphones or a Bluetooth speaker, check it is connected, or try without it.",
  connect: "We could not reach the video server. Move closer to the router, or switch between Wi-Fi and mobile data. A work or school network may block video calls.",
  rtt: "Your connection is slow to answer. Move closer to the router, or switch between Wi-Fi and mobile data.",
  loss: "Your connection drops data. Move closer to the router and close other apps that use the internet (downloads, streaming, games).",
  kbps: "There is not enough speed for video. Close other apps that use the internet, ask others at home to pause streaming, or move closer to the router.",
  relay: "Your network blocks the backup route video calls use. Try another network (mobile data or home Wi-Fi); a work network may block it.",
};

const result = { browser: "other", steps: {}, rtt_ms: null, loss_pct: null, kbps: null };
const advice = [];
let stream = null;
let audioContext = null;
let issuedIceServers = null;  // from the echo test's "ready": fresh TURN credentials

function say(text) { $("tc-status").textContent = text; }

function mark(step, state, text, adviceKey) {
  const node = $("step-" + step);
  result.steps[step] = state;
  if (!node) return;
  node.dataset.state = state;
  node.querySelector(".tc-result").textContent = (state === "pass" ? "✓ " : state === "problem" ? "⚠ " : "") + text;
  const box = node.querySelector(".tc-advice");
  if (state === "problem" && adviceKey) {
    box.textContent = ADVICE[adviceKey];
    box.hidden = false;
    advice.push(ADVICE[adviceKey]);
  } else {
    box.hidden = true;
  }
}

function checking(step, text) {
  const node = $("step-" + step);
  if (!node) return;
  node.dataset.state = "checking";
  node.querySelector(".tc-result").textContent = text;
}

// Only the family is kept: nothing that tells one phone from another.
function browserFamily(ua) {
  if (isWebview(ua)) return "webview";
  if (/SamsungBrowser\//.test(ua)) return "samsung";
  if (/Edg(e|A|iOS)?\//.test(ua)) return "edge";
  if (/Firefox\/|FxiOS\//.test(ua)) return "firefox";
  if (/Chrome\/|CriOS\/|Chromium\//.test(ua)) return "chrome";
  if (/Safari\//.test(ua) && /Version\//.test(ua)) return "safari";
  return "other";
}

function isWebview(ua) {
  // In-app browsers (Facebook, Instagram, LINE, WeChat, TikTok, Snapchat, Google app) and
  // Android's WebView ("; wv)"); on iOS an in-app browser lacks Safari's "Safari/" token.
  if (/FBAN|FBAV|FB_IAB|Instagram|Line\/|MicroMessenger|musical_ly|TikTok|Snapchat|GSA\/|; wv\)/.test(ua)) return true;
  return /iPhone|iPad|iPod/.test(ua) && /AppleWebKit/.test(ua) && !/Safari\//.test(ua);
}

function checkBrowser() {
  const ua = navigator.userAgent;
  result.browser = browserFamily(ua);
  if (result.browser === "webview") { mark("browser", "problem", "This is an in-app browser", "webview"); return false; }
  if (!window.isSecureContext) { mark("browser", "problem", "This page is not on a secure connection", "insecure"); return false; }
  const capable = typeof window.RTCPeerConnection === "function" && navigator.mediaDevices && typeof navigator.mediaDevices.getUserMedia === "function" && (window.AudioContext || window.webkitAudioContext);
  if (!capable) { mark("browser", "problem", "This browser cannot do video calls", "browser"); return false; }
  mark("browser", "pass", "Your browser can do video calls");
  return true;
}

function waitFor(target, event, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    target.addEventListener(event, () => { clearTimeout(timer); resolve(true); }, { once: true });
  });
}

async function checkCamera() {
  checking("camera", "Starting your camera…");
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 640 }, height: { ideal: 360 } } });
  } catch (err) {
    const key = err.name === "NotAllowedError" || err.name === "SecurityError" ? "camera_denied" : err.name === "NotFoundError" || err.name === "OverconstrainedError" ? "camera_missing" : "camera_busy";
    mark("camera", "problem", "The camera did not start", key);
    mark("microphone", "problem", "The microphone did not start", key === "camera_denied" ? null : "microphone");
    return false;
  }
  const preview = $("tc-preview");
  preview.srcObject = stream;
  preview.hidden = false;
  const video = stream.getVideoTracks()[0];
  if (!video) {
    mark("camera", "problem", "No camera picture", "camera_missing");
  } else {
    const playing = preview.videoWidth > 0 || await waitFor(preview, "loadeddata", 5000);
    if (playing && preview.videoWidth > 0) mark("camera", "pass", "We can see you (" + preview.videoWidth + "×" + preview.videoHeight + ")");
    else mark("camera", "problem", "No camera picture", "camera_dark");
  }
  return true;
}

async function checkMicrophone() {
  const track = stream && stream.getAudioTracks()[0];
  if (!track) { mark("microphone", "problem", "No microphone", "microphone"); return; }
  checking("microphone", "Listening… say a few words");
  const context = audioContext;
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const meter = $("tc-level");
  const heard = await new Promise((resolve) => {
    const until = performance.now() + MIC_MS;
    let loudFrames = 0;
    const tick = () => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const rms = Math.sqrt(sum / samples.length);
      meter.value = Math.min(100, Math.round(rms * 400));
      if (rms > 0.02) loudFrames += 1;
      if (loudFrames >= 5) resolve(true);
      else if (performance.now() > until) resolve(false);
      else setTimeout(tick, 50);
    };
    tick();
  });
  source.disconnect();
  if (heard) mark("microphone", "pass", "We can hear you");
  else mark("microphone", "problem", "We could not hear anything", "microphone");
}

function playTone() {
  const oscillator = audioContext.createOscillator();
  const gain = audioContext.createGain();
  oscillator.frequency.value = 660;
  gain.gain.setValueAtTime(0.0001, audioContext.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.3, audioContext.currentTime + 0.05);
  gain.gain.exponentialRampToValueAtTime(0.0001, audioContext.currentTime + 1.2);
  oscillator.connect(gain).connect(audioContext.destination);
  oscillator.start();
  oscillator.stop(audioContext.currentTime + 1.25);
}

function checkSpeaker() {
  checking("speaker", "Press “Play a sound”, then tell us if you heard it");
  const tone = $("tc-tone");
  tone.disabled = false;
  tone.focus();
  return new Promise((resolve) => {
    tone.addEventListener("click", () => {
      playTone();
      $("tc-heard").hidden = false;
      tone.textContent = "Play it again";
    });
    $("tc-heard-yes").addEventListener("click", () => { mark("speaker", "pass", "You heard the sound"); done(); }, { once: true });
    $("tc-heard-no").addEventListener("click", () => { mark("speaker", "problem", "You did not hear the sound", "speaker"); done(); }, { once: true });
    function done() { $("tc-heard").hidden = true; tone.disabled = true; resolve(); }
  });
}

// The connection: our camera and microphone go out on `send`, through the SFU, and come
// back on `recv`, exactly as another member of a group would receive them.
function echoTest() {
  return new Promise((resolve) => {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.ws;
    const ws = new WebSocket(url);
    const pcs = {};
    let config = { iceServers: [], relayOnly: false };
    let finished = false;
    const finish = (numbers) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "bye" }));
      ws.close();
      for (const pc of Object.values(pcs)) pc.close();
      resolve(numbers);
    };
    const timer = setTimeout(() => finish(null), CONNECT_MS + MEASURE_MS);
    ws.addEventListener("error", () => finish(null));
    ws.addEventListener("close", () => finish(null));
    ws.addEventListener("message", async (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ready") {
        config = { iceServers: message.ice_servers || [], relayOnly: message.relay_only };
        issuedIceServers = config.iceServers;
      } else if (message.type === "offer") {
        try {
          await answer(message);
        } catch (err) {
          finish(null);
        }
      } else if (message.type === "error") {
        finish(null);
      }
    });

    async function answer(message) {
      let pc = pcs[message.leg];
      if (!pc) {
        pc = new RTCPeerConnection({ iceServers: message.ice_servers || config.iceServers, bundlePolicy: "max-bundle", iceTransportPolicy: config.relayOnly ? "relay" : "all" });
        pcs[message.leg] = pc;
        if (message.leg === "recv") measureWhenFlowing(pc, pcs, finish);
      }
      await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
      if (message.leg === "send") {
        for (const t of pc.getTransceivers()) {
          let track = null;
          if (t.mid === message.publish.audio) track = stream.getAudioTracks()[0] || null;
          else if (t.mid === message.publish.video) track = stream.getVideoTracks()[0] || null;
          await t.sender.replaceTrack(track);
          t.direction = track ? "sendonly" : "inactive";
        }
      }
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      ws.send(JSON.stringify({ type: "answer", leg: message.leg, sdp: pc.localDescription.sdp }));
      if (message.leg === "send") capVideo(pc, message.publish.video);
    }
  });
}

function capVideo(pc, mid) {
  for (const t of pc.getTransceivers()) {
    if (t.mid !== mid || !t.sender.track) continue;
    const params = t.sender.getParameters();
    if (!params.encodings || !params.encodings.length) params.encodings = [{}];
    params.encodings[0].maxBitrate = videoKbps * 1000;
    t.sender.setParameters(params).catch(() => {});
  }
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);
  });
}

async function inbound(pc) {
  const totals = { bytes: 0, packets: 0, lost: 0, videoPackets: 0 };
  for (const s of (await pc.getStats()).values()) {
    if (s.type !== "inbound-rtp") continue;
    totals.bytes += s.bytesReceived || 0;
    totals.packets += s.packetsReceived || 0;
    totals.lost += Math.max(0, s.packetsLost || 0);
    if (s.kind === "video") totals.videoPackets += s.packetsReceived || 0;
  }
  return totals;
}

async function roundTrip(pcs) {
  // The SFU's receiver reports give the media round trip (remote-inbound-rtp); the ICE
  // pair's own checks are the fallback.
  let best = null;
  for (const pc of [pcs.send, pcs.recv]) {
    if (!pc) continue;
    for (const s of (await pc.getStats()).values()) {
      let seconds = null;
      if (s.type === "remote-inbound-rtp" && typeof s.roundTripTime === "number") seconds = s.roundTripTime;
      else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" && typeof s.currentRoundTripTime === "number") seconds = s.currentRoundTripTime;
      if (seconds !== null) best = best === null ? seconds : Math.max(best, seconds);
    }
  }
  return best === null ? null : Math.round(best * 1000);
}

function measureWhenFlowing(pc, pcs, finish) {
  const started = performance.now();
  const poll = async () => {
    if (pc.connectionState === "closed") return;
    const first = await inbound(pc);
    if (first.videoPackets > 0) {
      say("Measuring your connection…");
      await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
      if (pc.connectionState === "closed") return;
      const now = await inbound(pc);
      const at = performance.now();
      setTimeout(async () => {
        if (pc.connectionState === "closed") return;
        const end = await inbound(pc);
        const seconds = (performance.now() - at) / 1000;
        const received = end.packets - now.packets;
        const lost = end.lost - now.lost;
        finish({
          rtt_ms: await roundTrip(pcs),
          loss_pct: received + lost > 0 ? Math.round((lost / (received + lost)) * 10000) / 100 : null,
          kbps: Math.round(((end.bytes - now.bytes) * 8) / 1000 / seconds),
        });
      }, MEASURE_MS);
    } else if (performance.now() - started < CONNECT_MS) {
      setTimeout(poll, 250);
    }
  };
  poll();
}

async function checkConnection() {
  checking("connection", "Connecting to the video server…");
  if (!stream) { mark("connection", "problem", "Not tested: it needs the camera and microphone"); return; }
  const numbers = await echoTest();
  const node = $("step-connection");
  if (!numbers) { mark("connection", "problem", "We could not connect to the video server", "connect"); return; }
  Object.assign(result, numbers);
  node.querySelector(".tc-numbers").hidden = false;
  $("tc-rtt").textContent = numbers.rtt_ms === null ? "not measured" : numbers.rtt_ms + " ms";
  $("tc-loss").textContent = numbers.loss_pct === null ? "not measured" : numbers.loss_pct + "%";
  $("tc-kbps").textContent = numbers.kbps + " kbit/s";
  // The same thresholds the server records the step by.
  if (numbers.rtt_ms === null || numbers.rtt_ms > thresholds.max_rtt_ms) mark("connection", "problem", "Your connection is slow", "rtt");
  else if (numbers.loss_pct === null || numbers.loss_pct > thresholds.max_loss_pct) mark("connection", "problem", "Your connection loses data", "loss");
  else if (numbers.kbps < thresholds.min_kbps) mark("connection", "problem", "Your connection is too slow for video", "kbps");
  else mark("connection", "pass", "Your connection is good for video");
}

// The TURN relay: two connections that may only use it must reach each other through it.
// Each side's candidates travel in its description once gathered (no trickle), so none
// can arrive before the other side is ready for it.
async function checkRelay(iceServers) {
  checking("relay", "Checking the backup route…");
  const config = { iceServers, iceTransportPolicy: "relay" };
  const a = new RTCPeerConnection(config);
  const b = new RTCPeerConnection(config);
  const channel = a.createDataChannel("check");
  const opened = waitFor(channel, "open", RELAY_MS);
  let relayCandidate = false;
  try {
    await a.setLocalDescription(await a.createOffer());
    await gathered(a);
    relayCandidate = / typ relay/.test(a.localDescription.sdp);
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await gathered(b);
    await a.setRemoteDescription(b.localDescription);
  } catch (err) {
    // Reported below as a relay that did not connect.
  }
  const ok = relayCandidate && await opened;
  a.close(); b.close();
  if (ok) mark("relay", "pass", "The backup route works");
  else mark("relay", "problem", relayCandidate ? "The backup route did not connect" : "The backup route could not be reached", "relay");
}

async function relayServers() {
  // Fresh short-lived credentials from the server, as a room connection gets them (the
  // echo test's, or, when it could not run, from a socket opened only to ask).
  if (issuedIceServers) return issuedIceServers;
  return new Promise((resolve) => {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.ws);
    const timer = setTimeout(() => { ws.close(); resolve([]); }, 5000);
    ws.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "ready") return;
      clearTimeout(timer);
      ws.send(JSON.stringify({ type: "bye" }));
      ws.close();
      resolve(message.ice_servers || []);
    });
    ws.addEventListener("error", () => { clearTimeout(timer); resolve([]); });
  });
}

async function save() {
  const form = new FormData($("tc-form"));
  for (const [step, state] of Object.entries(result.steps)) form.set("step_" + step, state);
  form.set("browser", result.browser);
  for (const key of ["rtt_ms", "loss_pct", "kbps"]) if (result[key] !== null) form.set(key, String(result[key]));
  try {
    const response = await fetch("/techcheck/result", { method: "POST", body: form, headers: { Accept: "application/json" }, credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) return "Your result could not be saved: " + (body.error || response.status);
    return "Your result is saved: your care team can see it.";
  } catch (err) {
    return "Your result could not be saved: check your connection and run the check again.";
  }
}

function summarise(savedText) {
  const problems = Object.entries(result.steps).filter(([, state]) => state === "problem");
  $("tc-summary-heading").textContent = problems.length ? "Some things need attention" : "Everything works. You are ready for group.";
  const list = $("tc-summary-advice");
  list.replaceChildren(...[...new Set(advice)].map((text) => el("li", text)));
  $("tc-saved").textContent = savedText;
  $("tc-summary").hidden = false;
  $("tc-summary-heading").focus();
  say(problems.length ? "The check is finished: see what needs attention below." : "The check is finished: everything works.");
}

async function run() {
  $("tc-start").disabled = true;
  say("Checking…");
  const capable = checkBrowser();
  if (capable) {
    audioContext = new (window.AudioContext || window.webkitAudioContext)();
    await audioContext.resume().catch(() => {});
    if (await checkCamera()) await checkMicrophone();
    await checkSpeaker();
    await checkConnection();
    if (relayConfigured) await checkRelay(await relayServers());
  } else {
    for (const step of ["camera", "microphone", "speaker", "connection", "relay"]) {
      if (step !== "relay" || relayConfigured) mark(step, "problem", "Not possible in this browser");
    }
  }
  if (stream) for (const track of stream.getTracks()) track.stop();
  $("tc-preview").hidden = true;
  $("tc-level").value = 0;
  $("tc-start").hidden = true;
  if (audioContext) audioContext.close().catch(() => {});
  summarise(await save());
}

$("tc-start").addEventListener("click", run, { once: true });
