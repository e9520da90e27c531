// The acknowledgement countdown on a crisis event page. The server rendered the seconds
// left; this only counts them down (it never decides anything).
(function () {
  "use strict";
  const box = document.getElementById("ack-countdown");
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
})();
