// The few DOM helpers every page uses. Text always goes in as textContent: names, chat and
// reasons from the server never become markup.

export const $ = (id) => document.getElementById(id);

export function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// A type="button" button (never a form submit) that runs `onClick`.
export function button(label, onClick, cls) {
  const node = el("button", label, cls);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

// Clicks on the element with this id, when the page has one.
export function bind(id, handler) {
  const node = $(id);
  if (node) node.addEventListener("click", handler);
}

// The setter of a status line that can also say the connection is down (styled by its
// "offline" class).
export function statusLine(id) {
  return (text, offline) => {
    const status = $(id);
    status.textContent = text;
    status.classList.toggle("offline", Boolean(offline));
  };
}
