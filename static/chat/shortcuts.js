// The chat page's keyboard shortcuts, besides Enter and Shift+Enter (composer.js) and
// Ctrl/Cmd+K (search: sidebar.js): Esc stops the answer being written, Up in an empty
// message box edits the last question, and `?` (when not typing) lists them all
// (templates/chat/_shortcuts.html). They act through the page's own buttons (Stop, a
// question's Edit), so that a shortcut does exactly what the button does, and nothing
// when the button could not be pressed.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);

  // Something else that Esc closes or clears is open: Esc is its, not the answer's.
  function escapeTaken(event) {
    if (event.defaultPrevented || document.querySelector("dialog[open]")) return true;
    const menu = $("popup-menu");
    if (menu && !menu.hidden) return true;
    const app = $("chat-app");
    if (app && app.classList.contains("sidebar-open")) return true;
    const target = event.target instanceof Element ? event.target : null;
    return Boolean(target && target.closest(".question-editor, .sidebar, .conversation-rename"));
  }

  function visible(button) {
    return button && !button.hidden && !button.disabled;
  }

  // The Edit button of the last question shown: none while an answer is being written
  // (the button is disabled then).
  function lastQuestionEdit() {
    const questions = document.querySelectorAll("#message-list .message-user");
    const last = questions[questions.length - 1];
    return last ? last.querySelector(".edit-button") : null;
  }

  function start() {
    const input = $("message-input");
    const stop = $("stop-button");
    const dialog = $("shortcuts-dialog");
    const opener = $("shortcuts-button");
    if (!input || !dialog) return;
    let returnTo = null;

    function openList() {
      returnTo = document.activeElement;
      if (!dialog.open) dialog.showModal();
      dialog.querySelector("button").focus();
    }

    dialog.addEventListener("close", () => {
      if (returnTo && returnTo.isConnected) returnTo.focus();
      returnTo = null;
    });
    if (opener) opener.addEventListener("click", openList);

    input.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowUp" || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
      if (event.isComposing || input.value !== "") return;
      const edit = lastQuestionEdit();
      if (!visible(edit)) return;
      event.preventDefault();
      edit.click();
    });

    // Bubbling, so that what handles its own Esc (the question editor, the search box,
    // a menu, a dialog) comes first and says so.
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !event.isComposing) {
        if (escapeTaken(event) || !visible(stop)) return;
        event.preventDefault();
        stop.click();
      } else if (event.key === "?" && !event.ctrlKey && !event.metaKey && !event.altKey) {
        if (Composer.typingIn(event.target) || document.querySelector("dialog[open]")) return;
        event.preventDefault();
        openList();
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
