// semcat: keyboard review and drag-and-drop upload. Plain JS, no inline handlers (CSP: script-src 'self').
"use strict";

function typingInField(ev) {
  const t = ev.target;
  return t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
}

// Review page: each class's key (1..9, 0, letters) confirms it; Backspace (or ← right after a
// label) undoes the last label; n focuses the new-category field; ← / → previous / next image.
function setupReview() {
  const review = document.getElementById("review");
  const undo = document.getElementById("undo");
  if (!review && !undo) return;
  let busy = false;
  document.addEventListener("keydown", (ev) => {
    if (busy || ev.ctrlKey || ev.metaKey || ev.altKey || typingInField(ev)) return;
    if (undo && (ev.key === "Backspace" || ev.key === "ArrowLeft")) {
      busy = true;
      ev.preventDefault();
      undo.requestSubmit();
    } else if (!review) {
      return;
    } else if (ev.key === "n" && document.getElementById("new-category")) {
      ev.preventDefault();
      document.querySelector('#new-category input[name="name"]').focus();
    } else if (/^[0-9a-z]$/.test(ev.key)) {
      const button = review.querySelector(`button[data-key="${ev.key}"]:not([disabled])`);
      if (button) {
        busy = true;  // one label per keypress, even when the key repeats
        ev.preventDefault();
        button.classList.add("pressed");
        button.form.requestSubmit(button);
      }
    } else if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
      const link = document.getElementById(ev.key === "ArrowRight" ? "next" : "prev");
      if (link) { ev.preventDefault(); busy = true; window.location.assign(link.href); }
    }
  });
}

// Upload page: dropping files anywhere on the form fills the file input and submits it.
function setupUpload() {
  const form = document.getElementById("upload");
  if (!form) return;
  const input = form.querySelector('input[type="file"]');
  ["dragenter", "dragover"].forEach((name) => form.addEventListener(name, (ev) => {
    ev.preventDefault(); form.classList.add("over");
  }));
  form.addEventListener("dragleave", () => form.classList.remove("over"));
  form.addEventListener("drop", (ev) => {
    ev.preventDefault(); form.classList.remove("over");
    if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
    input.files = ev.dataTransfer.files;
    form.requestSubmit();
  });
  input.addEventListener("change", () => { if (input.files.length) form.requestSubmit(); });
}

document.addEventListener("DOMContentLoaded", () => { setupReview(); setupUpload(); });
