// The one WebSocket client the pages share (protocol 1): it says hello (with whatever a
// page needs to resume, such as the room's last seq), pings every ten seconds, and after
// a lost connection opens a new one with exponential backoff and jitter, so a server
// that restarts is not met by every browser at the same instant.

const HEARTBEAT_MS = 10000;

// What a close code means to a page. The server's close codes are read here and nowhere
// else: a page decides what to show for each meaning, never for a raw code.
//   removed, ended, replaced: the room let this person go (4001, 4002, 4003)
//   moved: the room lives on another node; the server said where just before (4307)
//   signed_out (4401), disabled (4402), refused (4403), link_inactive (4410), locked
//     (4423): the socket was refused; `refused` is true for all of them
//   lost: anything else (a network drop, a node stopping, 4400, 4408, 4429): connect again
export function closeMeaning(code) {
  // Close codes: rooms/closecodes.py (CloseCode), one meaning each; the reason text that
  // comes with a close is for logs and is never branched on.
  if (code === 4001) return { kind: "removed", refused: false };
  if (code === 4002) return { kind: "ended", refused: false };
  if (code === 4003) return { kind: "replaced", refused: false };
  if (code === 4307) return { kind: "moved", refused: false };
  if (code === 4401) return { kind: "signed_out", refused: true };
  if (code === 4402) return { kind: "disabled", refused: true };
  if (code === 4403) return { kind: "refused", refused: true };
  if (code === 4410) return { kind: "link_inactive", refused: true };
  if (code === 4423) return { kind: "locked", refused: true };
  return { kind: "lost", refused: false };
}

// Half a second doubled per failed attempt, at most 15 s, each wait drawn between half
// and all of that.
export function backoffDelay(attempt, random = Math.random) {
  return Math.min(15000, 500 * 2 ** Math.min(attempt, 5)) * (0.5 + random() / 2);
}

// wss: on an https page (always, outside local plain-http runs), to this page's host.
export function socketUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

// After a close the page's `onClose(meaning, event)` answers "stop", "now" (at once, no
// backoff: a room move nobody should notice) or "backoff"; on a backoff the attempt count
// grows and `onRetry(attempt)` runs before the wait. A socket that opens resets the count.
export class ReconnectingSocket {
  constructor({ url, resume = () => ({}), onOpen = () => {}, onMessage, onClose, onRetry = () => {} }) {
    this.url = url;
    this.resume = resume;
    this.onOpen = onOpen;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.onRetry = onRetry;
    this.ws = null;
    this.attempt = 0;
    this.heartbeat = null;
  }

  connect() {
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.attempt = 0;
      this.send({ type: "hello", protocol: 1, ...this.resume() });
      this.heartbeat = setInterval(() => this.ping(), HEARTBEAT_MS);
      this.onOpen();
    });
    ws.addEventListener("message", (event) => this.onMessage(JSON.parse(event.data)));
    ws.addEventListener("close", (event) => {
      clearInterval(this.heartbeat);
      const next = this.onClose(closeMeaning(event.code), event);
      if (next === "now") {
        setTimeout(() => this.connect(), 0);
      } else if (next === "backoff") {
        this.attempt += 1;
        this.onRetry(this.attempt);
        setTimeout(() => this.connect(), backoffDelay(this.attempt));
      }
    });
  }

  // False when there is no open socket: the message is not queued.
  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  ping() {
    return this.send({ type: "ping", t: Date.now() / 1000 });
  }
}
