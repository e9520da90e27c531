// The private "I need help" on the pages before the room. Without this script the form
// posts and the confirmation is a page of its own; with it the press goes in the
// background, so a half-answered question or a consent being read stays as it is. A
// press is kept (with its id) and sent again until the server says it is stored.
const form = document.getElementById("help-form");
if (form && window.fetch) sendInBackground(form);

function sendInBackground(form) {
  const confirm = document.getElementById("help-confirm");
  const button = form.querySelector("button[type=submit]");
  let pending = null;

  const pressId = () =>
    window.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(36).slice(2);
  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (pending) return;  // already sending this press
    form.elements.press_id.value = pressId();
    pending = new URLSearchParams(new FormData(form));
    button.disabled = true;
    confirm.textContent = "Sending…";
    for (let attempt = 0; ; attempt += 1) {
      let response;
      try {
        response = await fetch(form.action, {
          method: "POST",
          body: pending,
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
      } catch (error) {
        confirm.textContent = "Not sent yet, trying again. If you are in danger right now, call 911.";
        await wait(Math.min(8000, 1000 * 2 ** attempt));
        continue;
      }
      if (!response.ok) {
        // Refused (signed out, an expired form): the page itself says why.
        form.submit();
        return;
      }
      await response.json();
      pending = null;
      button.disabled = false;
      form.elements.text.value = "";
      confirm.textContent = "Your clinician has been told. They will contact you privately.";
      return;
    }
  });
}
