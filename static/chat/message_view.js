// One message on the page: its element, its text, and for a streaming answer the
// bookkeeping of the protocol's sequence numbers (docs/websocket.md): a delta is applied
// only when its seq is the next one, a repeat is dropped, a gap asks the server for a
// snapshot. Frames may come twice or late (a reconnect, a re-subscribe, a resent send),
// so applying one that the view already reflects changes nothing. Rendering is left to
// the page's animation-frame loop (hooks.scheduleRender).
(function () {
  "use strict";

  const STATUS_LABELS = {
    stopped: gettext("Stopped"),
    interrupted: gettext("Interrupted — the server restarted while answering"),
  };
  const RESYNC_AGAIN_MS = 2000;

  // "1st", "2nd", "3rd", "4th", "11th", "22nd": a place in line.
  function ordinal(n) {
    const tens = n % 100;
    const place =
      tens >= 11 && tens <= 13
        ? pgettext("place in line", "%(n)sth")
        : { 1: pgettext("place in line", "%(n)sst"), 2: pgettext("place in line", "%(n)snd"), 3: pgettext("place in line", "%(n)srd") }[
            n % 10
          ] || pgettext("place in line", "%(n)sth");
    return interpolate(place, { n }, true);
  }

  // Countdowns of `retrying` and `queued` notices: one timer for every view counting down,
  // running only while one is (and is on the page).
  const counting = new Set();
  let countdownTimer = null;

  function countDown(view) {
    counting.add(view);
    if (countdownTimer !== null) return;
    countdownTimer = setInterval(() => {
      for (const each of counting) if (!each.el.isConnected || !each.tickRetry()) counting.delete(each);
      if (!counting.size) {
        clearInterval(countdownTimer);
        countdownTimer = null;
      }
    }, 250);
  }

  function element(tag, className, attributes) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  // What an ended message shows: two `done` or `message` frames with the same key would
  // render the same thing.
  function endingKey(message) {
    return JSON.stringify([
      message.status,
      message.content || "",
      message.error_code || "",
      message.error_message || "",
      message.finish_reason || "",
      message.model || "",
      message.notes || [],
      message.usage || null,
      message.duration_ms || 0,
    ]);
  }

  class MessageView {
    constructor(message, hooks) {
      // A tool's result is no bubble of its own: it fills a card in the answer that called it.
      if (message.role === "tool" && window.ToolCards) return ToolCards.view(message, hooks);
      this.id = message.id;
      this.role = message.role;
      // scheduleRender(view), requestResync(view), openImage(attachment, name, opener),
      // pickedModel(), showVersion(messageId, fromView), editQuestion(view, text)
      this.hooks = hooks;
      this.lastSeq = 0;
      this.ahead = new Map(); // seq -> text of deltas that arrived after a gap
      // seq -> length of the text once that seq was applied: a snapshot that starts at a
      // seq this view has since passed (deltas were on their way when the page
      // re-subscribed) can still be spliced in instead of asking again.
      this.lengthAt = new Map();
      this.ending = null; // endingKey of the ended state shown, null while streaming
      this.lastHeardAt = performance.now(); // when a frame about this message last came
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
      author.textContent = this.role === "user" ? gettext("You said:") : gettext("Yi said:");
      this.body = element("div", this.role === "assistant" ? "message-body markdown" : "message-body");
      // The app's own notices about an answer ("… so yi-vision answered"): plain text
      // outside the rendered Markdown, so that no model output can pass for one.
      this.notes = element("ul", "message-notes", { "aria-label": gettext("Notes from yiweb") });
      this.notes.hidden = true;
      this.images = element("div", "message-images");
      this.images.hidden = true;
      this.imagesKey = "[]";
      this.typing = element("div", "typing-indicator", { "aria-hidden": "true" });
      this.typing.append(element("span"), element("span"), element("span"));
      this.retryNotice = element("p", "retry-notice", { role: "status" });
      this.retryNotice.hidden = true;
      this.errorBox = element("div", "message-error", { role: "alert" });
      this.errorBox.hidden = true;
      this.statusLabel = element("p", "message-status-label");
      this.statusLabel.hidden = true;
      inner.append(author, this.images, this.notes, this.body, this.typing, this.retryNotice, this.errorBox, this.statusLabel);
      this.versions = new VersionStepper((id) => this.hooks.showVersion(id, this));
      this.actions = element("div", "message-actions");
      this.actions.append(this.versions.el);
      if (this.role === "assistant") {
        this.facts = new AnswerFacts();
        // Retry under every ended answer, Continue under the last; chat.js handles the clicks.
        this.retryButton = element("button", "btn btn-small btn-ghost retry-button", {
          type: "button",
          title: gettext("Ask again: a new answer, with this one kept as another version"),
        });
        this.retryButton.textContent = gettext("Retry");
        this.continueButton = element("button", "btn btn-small btn-ghost continue-button", { type: "button" });
        this.continueButton.textContent = gettext("Continue");
        // The whole answer as the model wrote it (its Markdown), not as shown.
        this.copyButton = element("button", "btn btn-small btn-ghost copy-answer", {
          type: "button",
          "aria-label": gettext("Copy the answer (Markdown)"),
        });
        this.copyButton.textContent = gettext("Copy");
        this.copyButton.addEventListener("click", () => YiMarkdown.copyText(this.message.content || "", this.copyButton));
        this.actions.append(this.copyButton, this.retryButton, this.continueButton);
        inner.append(this.facts.el, this.actions);
        el.append(inner);
      } else {
        this.editButton = element("button", "btn btn-small btn-ghost edit-button", {
          type: "button",
          title: gettext("Edit and send again, with this version kept"),
        });
        this.editButton.textContent = gettext("Edit");
        this.editButton.addEventListener("click", () => this.startEdit());
        this.actions.append(this.editButton);
        this.editor = null;
        this.inner = inner;
        el.append(inner, this.actions);
      }
      this.el = el;
    }

    // The versions of this message the page can step between (its `sibling_ids`).
    showVersions(siblingIds) {
      this.versions.show(this.id, siblingIds);
    }

    // While an answer is being written in the conversation, the thread cannot change
    // under it: no other version, edit or retry (the server would refuse the last two).
    lock(locked) {
      this.versions.lock(locked);
      if (this.editButton) this.editButton.disabled = locked;
      if (this.retryButton) this.retryButton.disabled = locked;
      if (this.continueButton) this.continueButton.disabled = locked;
    }

    startEdit() {
      if (this.editor) {
        this.editor.input.focus();
        return;
      }
      this.editor = new QuestionEditor({
        host: this.inner,
        body: this.body,
        text: this.message.content || "",
        hasImages: (this.message.attachments || []).length > 0,
        onSave: (text) => this.hooks.editQuestion(this, text),
        onClose: () => {
          this.editor = null;
          this.el.classList.remove("is-editing");
          this.editButton.focus();
        },
      });
      this.el.classList.add("is-editing");
    }

    get streaming() {
      return this.message.status === "streaming";
    }

    // The page asks the server again about an answer it has not heard of for a while (silence_watch.js).
    heard() {
      this.lastHeardAt = performance.now();
    }

    // True when this message is already shown ended exactly as `message` says.
    endedAs(message) {
      return this.ending !== null && this.ending === endingKey(message);
    }

    // The whole message object from the server: the page data, a `message` frame, or
    // the authoritative final state of a `done` frame.
    update(message) {
      this.heard();
      this.message = message;
      const text = message.content || "";
      this.ending = message.status === "streaming" ? null : endingKey(message);
      this.showImages(message.attachments || []);
      this.showNotes(message.notes || []);
      if (this.role !== "assistant") {
        this.body.textContent = text;
        this.body.hidden = Boolean(this.editor) || !text.trim(); // images alone, or being edited
      } else if (message.status === "streaming") {
        if (typeof message.seq === "number" && message.seq > this.lastSeq) this.lastSeq = message.seq;
        this.markdown.set(text);
        this.lengthAt = new Map([[this.lastSeq, text.length]]);
        this.hooks.scheduleRender(this);
      } else {
        if (typeof message.seq === "number") this.lastSeq = message.seq;
        this.lengthAt.clear();
        // A long answer is shown over several frames (markdown_stream.js).
        if (this.markdown.finish(text)) this.hooks.scheduleRender(this);
      }
      // Screen readers wait for the finished answer instead of reading every frame.
      if (message.status === "streaming" || (this.markdown && this.markdown.pending)) {
        this.el.setAttribute("aria-busy", "true");
      } else {
        this.el.removeAttribute("aria-busy");
      }
      this.errorBox.hidden = message.status !== "error";
      if (message.status === "error") {
        this.errorBox.textContent =
          message.error_message ||
          interpolate(gettext("The answer failed (%(code)s)."), { code: message.error_code || gettext("unknown error") }, true);
      }
      this.statusLabel.hidden = !STATUS_LABELS[message.status];
      this.statusLabel.textContent = STATUS_LABELS[message.status] || "";
      this.showVersions(message.sibling_ids);
      if (this.facts) this.facts.show(message, this.hooks.pickedModel());
      if (this.role === "assistant" && window.ToolCards) ToolCards.showCalls(this, message);
      if (message.status !== "streaming") this.clearRetry();
      if (this.role === "assistant") {
        this.actions.hidden = message.status === "streaming";
        this.copyButton.hidden = !text;
        // Going on from where it ended makes sense only if it ended early.
        this.continueButton.hidden = !(
          text &&
          (["stopped", "interrupted", "error"].includes(message.status) || message.finish_reason === "length")
        );
      }
      // Last, so that a test waiting for data-status="complete" finds the final text.
      this.el.dataset.status = message.status;
    }

    // A question's images, as thumbnails that open the viewer.
    showImages(attachments) {
      const key = JSON.stringify(attachments.map((a) => a.id));
      if (key === this.imagesKey) return;
      this.imagesKey = key;
      this.images.replaceChildren(
        ...attachments.map((attachment, index) => {
          const name = attachment.original_name || interpolate(gettext("Attached image %(n)s"), { n: index + 1 }, true);
          const button = element("button", "message-image", { type: "button", title: interpolate(gettext("%(name)s: open full size"), { name }, true) });
          const image = element("img", "", { alt: name, src: attachment.thumbnail_url, decoding: "async" });
          // Its proportions before it loads, so the conversation does not jump.
          if (attachment.width && attachment.height) {
            image.width = attachment.width;
            image.height = attachment.height;
          }
          button.append(image);
          button.addEventListener("click", () => this.hooks.openImage(attachment, name, button));
          return button;
        }),
      );
      this.images.hidden = attachments.length === 0;
    }

    showNotes(notes) {
      const texts = notes.filter((note) => typeof note === "string" && note);
      if (JSON.stringify(texts) === JSON.stringify([...this.notes.children].map((li) => li.textContent))) return;
      this.notes.replaceChildren(
        ...texts.map((note) => {
          const item = element("li", "message-note");
          item.textContent = note;
          return item;
        }),
      );
      this.notes.hidden = texts.length === 0;
    }

    delta(frame) {
      this.heard();
      if (frame.seq <= this.lastSeq) return;
      if (!this.streaming) {
        // Newer text for an answer shown as ended: it was reopened ("continue") while this
        // page was away. The server's answer to a subscribe says so with a snapshot.
        this.resync();
        return;
      }
      if (frame.seq !== this.lastSeq + 1) {
        this.ahead.set(frame.seq, frame.text);
        this.resync();
        return;
      }
      this.appendSeq(frame.seq, frame.text);
      this.applyAhead();
      this.clearRetry();
      this.hooks.scheduleRender(this);
    }

    snapshot(frame) {
      this.heard();
      // A tab that opens (or comes back to) an answer waiting its turn learns its place.
      if (this.streaming && frame.queued) this.queued(frame.queued);
      else if (this.retry && this.retry.position) this.clearRetry();
      if (!this.streaming) {
        // Only a reopened answer has text past its ending; a snapshot taken before the
        // ending that arrives after it has none, and must not undo the final text.
        if (frame.from_seq === 0 && frame.seq > this.lastSeq) {
          this.update({ ...this.message, status: "streaming", content: frame.text, seq: frame.seq,
                        error_code: "", error_message: "", finish_reason: "" });
        }
        return;
      }
      // Nothing this view does not have: a checkpoint read from the database lags behind
      // the deltas, and a repeated snapshot was applied already.
      if (frame.seq < this.lastSeq) return;
      const start = frame.from_seq === 0 ? 0 : this.lengthAt.get(frame.from_seq);
      if (start === undefined) {
        // It starts at a seq this view never stood at: it cannot be spliced in.
        if (frame.seq > this.lastSeq) this.resync(true);
        return;
      }
      this.markdown.set(this.markdown.text.slice(0, start) + frame.text);
      this.lastSeq = frame.seq;
      this.lengthAt.set(this.lastSeq, this.markdown.text.length);
      this.resyncRequestedAt = 0;
      this.applyAhead();
      if (frame.text) this.clearRetry();
      this.hooks.scheduleRender(this);
    }

    appendSeq(seq, text) {
      this.markdown.append(text);
      this.lastSeq = seq;
      this.lengthAt.set(seq, this.markdown.text.length);
    }

    applyAhead() {
      while (this.ahead.has(this.lastSeq + 1)) this.appendSeq(this.lastSeq + 1, this.ahead.get(this.lastSeq + 1));
      for (const seq of this.ahead.keys()) if (seq <= this.lastSeq) this.ahead.delete(seq);
    }

    resync(force) {
      const now = Date.now();
      if (!force && now - this.resyncRequestedAt < RESYNC_AGAIN_MS) return;
      this.resyncRequestedAt = now;
      this.hooks.requestResync(this);
    }

    // The stored ending. It wins over whatever this view has (a sweep's `interrupted`
    // keeps only the last checkpoint, shorter than the deltas shown), except that the same
    // ending twice renders nothing again.
    done(frame) {
      this.heard();
      this.ahead.clear();
      if (typeof frame.seq === "number") this.lastSeq = frame.seq;
      if (!this.endedAs(frame.message)) this.update(frame.message);
    }

    // The `retrying` frame: upstream refused or could not be reached before the first
    // token; show why and count down the wait.
    retrying(frame) {
      this.heard();
      if (!this.streaming) return; // late: the answer has ended since
      this.retry = { reason: frame.reason || gettext("no answer"), until: Date.now() + (Number(frame.delay) || 0) * 1000 };
      this.retryNotice.dataset.kind = "retrying";
      this.retryNotice.dataset.attempt = String(frame.attempt ?? "");
      this.retryNotice.hidden = false;
      this.tickRetry();
      countDown(this);
    }

    // The `queued` frame (or a snapshot's `queued`): the key's usage tier has no room for
    // this answer's request yet (docs/websocket.md); show its place in line and count down
    // the estimate, in the answer's place, until its first text.
    queued(frame) {
      this.heard();
      if (!this.streaming) return;
      const position = Math.max(1, Number(frame.position) || 1);
      this.retry = { position, until: Date.now() + (Number(frame.starts_in) || 0) * 1000 };
      this.retryNotice.dataset.kind = "queued";
      this.retryNotice.hidden = false;
      this.tickRetry();
      countDown(this);
    }

    tickRetry() {
      if (!this.retry) return false;
      const left = Math.ceil((this.retry.until - Date.now()) / 1000);
      if (this.retry.position) {
        const when = left > 0 ? interpolate(gettext("starts in %(left)s s"), { left }, true) : gettext("starts any moment");
        this.retryNotice.textContent = interpolate(
          gettext("Queued: %(when)s (%(place)s in line)"),
          { when, place: ordinal(this.retry.position) },
          true,
        );
        return true;
      }
      // `reason` names the provider and what went wrong (chat/sentences.py RETRY_REASONS).
      this.retryNotice.textContent = interpolate(
        left > 0 ? gettext("%(reason)s; trying again in %(left)s s.") : gettext("%(reason)s; trying again now…"),
        { reason: this.retry.reason, left },
        true,
      );
      return true;
    }

    clearRetry() {
      if (this.retry === null && this.retryNotice.hidden) return; // every delta comes here: no DOM write then
      this.retry = null;
      this.retryNotice.hidden = true;
      this.retryNotice.textContent = "";
    }

    // Renders what changed, within the frame's time budget; true while more is left.
    render(deadline) {
      if (!this.markdown || !(this.streaming || this.markdown.pending)) return false;
      const more = this.markdown.render(deadline);
      if (!more && !this.streaming) this.el.removeAttribute("aria-busy");
      return more;
    }
  }

  window.MessageView = MessageView;
})();
