// One message on the page: its element, its text, and for a streaming answer the
// bookkeeping of the protocol's sequence numbers (docs/websocket.md): a delta is applied
// only when its seq is the next one, a repeat is dropped, a gap asks the server for a
// snapshot. Rendering is left to the page's animation-frame loop (hooks.scheduleRender).
(function () {
  "use strict";

  const STATUS_LABELS = {
    stopped: "Stopped",
    interrupted: "Interrupted — the server restarted while answering",
  };
  const RESYNC_AGAIN_MS = 2000;

  function element(tag, className, attributes) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  function metaText(message) {
    const parts = [];
    if (message.model) parts.push(message.model);
    const usage = message.usage || {};
    if (usage.completion_tokens) parts.push(`${usage.completion_tokens} tokens`);
    if (message.duration_ms) parts.push(`${(message.duration_ms / 1000).toFixed(1)} s`);
    return parts.join(" · ");
  }

  class MessageView {
    constructor(message, hooks) {
      this.id = message.id;
      this.role = message.role;
      this.hooks = hooks; // scheduleRender(view), requestResync(view)
      this.lastSeq = 0;
      this.ahead = new Map(); // seq -> text of deltas that arrived after a gap
      this.resyncRequestedAt = 0;
      this.retry = null;
      this.build();
      this.markdown = this.role === "assistant" ? new YiMarkdown.StreamingMarkdown(this.body) : null;
      this.update(message);
    }

    build() {
      const el = element("article", `message message-${this.role}`, {
        "data-message-id": String(this.id),
        "data-role": this.role,
      });
      const inner = element("div", "message-inner");
      const author = element("h3", "visually-hidden");
      author.textContent = this.role === "user" ? "You said:" : "Yi said:";
      this.body = element("div", this.role === "assistant" ? "message-body markdown" : "message-body");
      this.typing = element("div", "typing-indicator", { "aria-hidden": "true" });
      this.typing.append(element("span"), element("span"), element("span"));
      this.retryNotice = element("p", "retry-notice", { role: "status" });
      this.retryNotice.hidden = true;
      this.errorBox = element("div", "message-error", { role: "alert" });
      this.errorBox.hidden = true;
      this.statusLabel = element("p", "message-status-label");
      this.statusLabel.hidden = true;
      this.meta = element("p", "message-meta");
      inner.append(author, this.body, this.typing, this.retryNotice, this.errorBox, this.statusLabel, this.meta);
      if (this.role === "assistant") {
        // Shown under the last answer once it has ended; chat.js handles the clicks.
        this.actions = element("div", "message-actions");
        this.retryButton = element("button", "btn btn-small btn-ghost retry-button", { type: "button" });
        this.retryButton.textContent = "Retry";
        this.continueButton = element("button", "btn btn-small btn-ghost continue-button", { type: "button" });
        this.continueButton.textContent = "Continue";
        this.actions.append(this.retryButton, this.continueButton);
        inner.append(this.actions);
      }
      el.append(inner);
      this.el = el;
    }

    get streaming() {
      return this.message.status === "streaming";
    }

    // The whole message object from the server: the page data, a `message` frame, or
    // the authoritative final state of a `done` frame.
    update(message) {
      this.message = message;
      const text = message.content || "";
      if (this.role !== "assistant") {
        this.body.textContent = text;
      } else if (message.status === "streaming") {
        if (typeof message.seq === "number" && message.seq > this.lastSeq) this.lastSeq = message.seq;
        this.markdown.set(text);
        this.hooks.scheduleRender(this);
      } else {
        this.markdown.finish(text);
      }
      // Screen readers wait for the finished answer instead of reading every frame.
      if (message.status === "streaming") this.el.setAttribute("aria-busy", "true");
      else this.el.removeAttribute("aria-busy");
      this.errorBox.hidden = message.status !== "error";
      if (message.status === "error") {
        this.errorBox.textContent =
          message.error_message || `The answer failed (${message.error_code || "unknown error"}).`;
      }
      this.statusLabel.hidden = !STATUS_LABELS[message.status];
      this.statusLabel.textContent = STATUS_LABELS[message.status] || "";
      this.meta.textContent = this.role === "assistant" && message.status !== "streaming" ? metaText(message) : "";
      if (message.status !== "streaming") this.clearRetry();
      if (this.actions) {
        this.actions.hidden = message.status === "streaming";
        // Going on from where it ended makes sense only if it ended early.
        this.continueButton.hidden = !(
          text &&
          (["stopped", "interrupted", "error"].includes(message.status) || message.finish_reason === "length")
        );
      }
      // Last, so that a test waiting for data-status="complete" finds the final text.
      this.el.dataset.status = message.status;
    }

    delta(frame) {
      if (frame.seq <= this.lastSeq) return;
      if (frame.seq !== this.lastSeq + 1) {
        this.ahead.set(frame.seq, frame.text);
        this.resync();
        return;
      }
      this.markdown.append(frame.text);
      this.lastSeq = frame.seq;
      this.applyAhead();
      this.clearRetry();
      this.hooks.scheduleRender(this);
    }

    snapshot(frame) {
      if (frame.from_seq === 0) {
        this.markdown.set(frame.text);
      } else if (frame.from_seq === this.lastSeq) {
        this.markdown.append(frame.text);
      } else {
        // A snapshot that does not start where this page stands cannot be spliced in.
        if (frame.seq > this.lastSeq) this.resync(true);
        return;
      }
      this.lastSeq = frame.seq;
      this.resyncRequestedAt = 0;
      this.applyAhead();
      if (frame.text) this.clearRetry();
      this.hooks.scheduleRender(this);
    }

    applyAhead() {
      while (this.ahead.has(this.lastSeq + 1)) {
        this.lastSeq += 1;
        this.markdown.append(this.ahead.get(this.lastSeq));
      }
      for (const seq of this.ahead.keys()) if (seq <= this.lastSeq) this.ahead.delete(seq);
    }

    resync(force) {
      const now = Date.now();
      if (!force && now - this.resyncRequestedAt < RESYNC_AGAIN_MS) return;
      this.resyncRequestedAt = now;
      this.hooks.requestResync(this);
    }

    done(frame) {
      this.ahead.clear();
      if (typeof frame.seq === "number") this.lastSeq = frame.seq;
      this.update(frame.message);
    }

    // The `retrying` frame: upstream refused or could not be reached before the first
    // token; show why and count down the wait.
    retrying(frame) {
      this.retry = { reason: frame.reason || "no answer", until: Date.now() + (Number(frame.delay) || 0) * 1000 };
      this.retryNotice.dataset.attempt = String(frame.attempt ?? "");
      this.retryNotice.hidden = false;
      this.tickRetry();
    }

    tickRetry() {
      if (!this.retry) return false;
      const left = Math.ceil((this.retry.until - Date.now()) / 1000);
      const when = left > 0 ? `retrying in ${left} s` : "retrying now…";
      this.retryNotice.textContent = `The Yi API is busy (${this.retry.reason}); ${when}`;
      return true;
    }

    clearRetry() {
      this.retry = null;
      this.retryNotice.hidden = true;
      this.retryNotice.textContent = "";
    }

    render() {
      if (this.markdown && this.streaming) this.markdown.render();
    }
  }

  window.MessageView = MessageView;
})();
