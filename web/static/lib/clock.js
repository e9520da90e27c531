// The server's clock as seen from this device. Deadlines and the session clock are
// computed from the server's timestamps, so every screen must correct for its own clock
// being off: the offset comes from ping/pong round trips over the socket.

const KEPT_SAMPLES = 8;
const MAX_RTT_S = 10;

export class ServerClock {
  constructor() {
    this.samples = [];
    this.offset = 0; // server time minus local time, in seconds
  }

  // Now on the server's clock, in seconds since the epoch.
  now() {
    return Date.now() / 1000 + this.offset;
  }

  // A pong answers our ping `t` with the server's time: of the recent samples, the one
  // with the smallest round trip is the least skewed by a slow leg. A round trip that is
  // negative (the local clock stepped) or absurdly long says nothing and is dropped.
  onPong(message) {
    const rtt = Date.now() / 1000 - message.t;
    if (rtt < 0 || rtt > MAX_RTT_S) return;
    this.samples.push({ rtt, offset: message.server_time - (message.t + rtt / 2) });
    while (this.samples.length > KEPT_SAMPLES) this.samples.shift();
    this.offset = this.samples.reduce((best, s) => (s.rtt < best.rtt ? s : best)).offset;
  }

  // A first guess from a message's server time, until the first round trip is measured.
  seed(serverTime) {
    if (this.samples.length === 0) this.offset = serverTime - Date.now() / 1000;
  }
}

// m:ss of a number of seconds, with a minus sign when it is negative.
export function mmss(seconds) {
  const sign = seconds < 0 ? "-" : "";
  const total = Math.floor(Math.abs(seconds));
  return sign + Math.floor(total / 60) + ":" + String(total % 60).padStart(2, "0");
}
