// The acknowledgement countdown on a crisis event page. The server rendered the seconds
// left; this only counts them down (it never decides anything).
watchForChanges(document.getElementById("event-changed"));
countDown(document.getElementById("ack-countdown"));

function watchForChanges(changed) {
  // Someone else acting on the event (acknowledging, paging, adding a step) changes its
  // state or step count: say so, rather than let this page show a stale timeline.
  if (changed) {
    const seen = changed.dataset.state + "/" + changed.dataset.steps;
    const poll = async () => {
      try {
        const response = await fetch(changed.dataset.versionUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.ok) {
          const now = await response.json();
          if (now.state + "/" + now.steps !== seen) {
            changed.hidden = false;
            return;  // told once; the link shows the latest
          }
        }
      } catch (error) {
        // Offline for a moment: try again on the next round.
      }
      setTimeout(poll, 5000);
    };
    setTimeout(poll, 5000);
  }
}

function countDown(box) {
  if (!box) return;
  const left = box.querySelector(".left");
  const end = Date.now() + Number(box.dataset.left) * 1000;
  function tick() {
    const s = Math.round((end - Date.now()) / 1000);
    if (s <= 0) {
      left.textContent = "overdue: the next person is being paged";
      box.classList.add("overdue");
      return;
    }
    left.textContent = Math.floor(s / 60) + " min " + (s % 60) + " s left";
    setTimeout(tick, 1000);
  }
  tick();
}
