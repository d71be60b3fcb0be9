// Editing an earlier question in place: its text in a box, "Save & send" and "Cancel".
// Saving sends an `edit` (chat.js); the server keeps the old version and what followed as
// a branch and answers the new one, and the page shows it when the `thread` comes back.
// Until then the editor stays, so that a refusal (too long, busy, not connected) loses
// nothing of what was typed.
(function () {
  "use strict";

  function element(tag, className, attributes) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  class QuestionEditor {
    // host: where the editor goes (it is shown instead of `body`); text: the question's;
    // hasImages: a question of images alone may be saved empty; onSave(text); onClose().
    constructor({ host, body, text, hasImages, onSave, onClose }) {
      this.body = body;
      this.hasImages = hasImages;
      this.onSave = onSave;
      this.onClose = onClose;
      this.form = element("form", "question-editor");
      this.input = element("textarea", "question-editor-input", { rows: "3", "aria-label": gettext("Edit your message") });
      this.input.value = text;
      this.error = element("p", "question-editor-error", { role: "alert" });
      this.error.hidden = true;
      const bar = element("div", "question-editor-bar");
      this.cancel = element("button", "btn btn-small btn-ghost question-editor-cancel", { type: "button" });
      this.cancel.textContent = gettext("Cancel");
      this.save = element("button", "btn btn-small btn-send question-editor-save", { type: "submit" });
      this.save.textContent = gettext("Save & send");
      bar.append(this.cancel, this.save);
      this.form.append(this.input, this.error, bar);
      body.hidden = true;
      host.append(this.form);

      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.submit();
      });
      this.cancel.addEventListener("click", () => this.close());
      this.input.addEventListener("input", () => this.changed());
      this.input.addEventListener("keydown", (event) => {
        if (event.key === "Escape") {
          event.preventDefault();
          event.stopPropagation();
          this.close();
        } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
          // As in the composer: Enter sends, Shift+Enter is a new line; Enter that confirms
          // an IME candidate is neither.
          event.preventDefault();
          this.submit();
        }
      });
      this.changed();
      this.input.focus();
      this.input.setSelectionRange(text.length, text.length);
    }

    changed() {
      this.input.style.height = "auto";
      this.input.style.height = `${Math.min(this.input.scrollHeight, 320)}px`;
      this.save.disabled = this.busy || (!this.input.value.trim() && !this.hasImages);
    }

    submit() {
      if (this.busy || this.save.disabled) return;
      this.showError("");
      this.onSave(this.input.value);
    }

    // Sent: wait for the server's answer (a `thread`, or an `error`).
    setBusy(busy) {
      this.busy = busy;
      this.input.readOnly = busy;
      this.save.textContent = busy ? gettext("Sending…") : gettext("Save & send");
      this.changed();
    }

    showError(sentence) {
      this.error.textContent = sentence;
      this.error.hidden = !sentence;
      if (sentence) this.setBusy(false);
    }

    close() {
      this.form.remove();
      this.body.hidden = !this.body.textContent.trim();
      this.onClose();
    }
  }

  window.QuestionEditor = QuestionEditor;
})();
