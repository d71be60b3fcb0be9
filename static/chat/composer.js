// The composer: the message box (it grows with its text; Enter sends, Shift+Enter is a new
// line), its images (attachments.js), and the Send button, enabled when there is something
// to send. A send pressed while images upload goes once they are up. What a send does is
// chat.js's (onSubmit); text the server refused comes back here (restoreDraft).
(function () {
  "use strict";

  class Composer {
    // form, input, sendButton; tray: the AttachmentTray options but onChange and
    // composerInput; onSubmit(text, attachmentIds); notify(sentence, info) / quiet(): the
    // notice above the box.
    constructor({ form, input, sendButton, tray, onSubmit, notify, quiet }) {
      this.input = input;
      this.sendButton = sendButton;
      this.onSubmit = onSubmit;
      this.notify = notify;
      this.quiet = quiet;
      this.waitingForUploads = false;
      this.tray = new AttachmentTray({ ...tray, composerInput: input, onChange: () => this.uploadsChanged() });
      input.addEventListener("input", () => this.changed());
      input.addEventListener("keydown", (event) => {
        // isComposing: Enter that confirms an IME candidate (Chinese, Japanese…) is not a send.
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
          event.preventDefault();
          this.submit();
        }
      });
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.submit();
      });
    }

    get text() {
      return this.input.value;
    }

    changed() {
      this.sendButton.disabled = this.input.value.trim() === "" && !this.tray.hasImages();
      this.input.style.height = "auto";
      this.input.style.height = `${Math.min(this.input.scrollHeight, 240)}px`;
    }

    // Send pressed while images are still uploading: the send goes once they are all up
    // (or refused, or removed), with whatever the composer holds then.
    uploadsChanged() {
      this.changed();
      if (!this.waitingForUploads || this.tray.uploading()) return;
      this.waitingForUploads = false;
      this.quiet();
      this.submit();
    }

    submit() {
      const text = this.input.value;
      if (text.trim() === "" && !this.tray.hasImages()) return;
      if (this.tray.uploading()) {
        this.waitingForUploads = true;
        this.notify(gettext("Waiting for uploads…"), true);
        return;
      }
      const attachmentIds = this.tray.ready().map((chip) => chip.attachment.id);
      if (text.trim() === "" && !attachmentIds.length) return;
      this.onSubmit(text, attachmentIds);
    }

    // Text the server refused goes back into the box, in front of anything typed since.
    restoreDraft(text) {
      const current = this.input.value;
      if (current === text || !text.trim()) return;
      this.input.value = current.trim() ? `${text}\n${current}` : text;
      this.changed();
    }

    clear() {
      this.input.value = "";
      this.changed();
      this.input.focus();
    }

    // Whether `target` is a field one types into (this box or any other): keys and pastes
    // there are the field's own, not the page's shortcuts or attachments.
    static typingIn(target) {
      if (!(target instanceof Element)) return false;
      return Boolean(target.closest("input, textarea, select, [contenteditable]:not([contenteditable='false'])"));
    }
  }

  window.Composer = Composer;
})();
