// Idle lock for staff screens: after the program's idle time without keyboard, pointer or
// touch activity, patient information on the page is hidden until the password is given
// again. The server enforces the same lock; live calls and open crisis events never end.
const minutes = Number(document.body.dataset.idleMinutes || "15");
const idleMs = minutes * 60 * 1000;
const pingEveryMs = 60 * 1000;
let last = Date.now();
let lastPing = 0;
let locked = false;

function lock() {
  if (locked) return;
  locked = true;
  document.body.classList.add("phi-locked");
  const banner = document.createElement("div");
  banner.className = "lock-banner";
  banner.setAttribute("role", "alert");
  const text = document.createElement("p");
  text.textContent = "Patient information is hidden after " + minutes +
    " minutes without activity. Live sessions carry on.";
  const link = document.createElement("a");
  link.className = "button primary";
  link.href = "/unlock?next=" + encodeURIComponent(location.pathname + location.search);
  link.textContent = "Unlock";
  banner.append(text, link);
  document.body.prepend(banner);
  link.focus();
}

function activity() {
  if (locked) return;
  last = Date.now();
  if (last - lastPing > pingEveryMs) {
    lastPing = last;
    fetch("/api/activity", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
      credentials: "same-origin",
    }).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (state) {
      if (state && state.locked) lock();
    }).catch(function () { /* offline: the local timer still locks */ });
  }
}

["keydown", "pointerdown", "pointermove", "touchstart", "scroll"].forEach(function (name) {
  window.addEventListener(name, activity, { passive: true });
});
setInterval(function () {
  if (!locked && Date.now() - last > idleMs) lock();
}, 5000);
