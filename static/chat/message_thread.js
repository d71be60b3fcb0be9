// The messages the page shows: the conversation's thread (one branch of it), a MessageView
// each, in the conversation's order; which of them are streaming (the Stop button, the
// views locked against edits meanwhile), and which the page may still have to hear the
// ending of (silence_watch.js), and so what a subscribe says the page holds. What each
// server frame does with them is frame_handlers.js.
(function () {
  "use strict";

  const HOLDING_MAX = 50;

  class MessageThread {
    // list, emptyState, stop: the page's message list, its empty state and the Stop button;
    // hooks: what each MessageView is given (message_view.js); renders: the
    // RenderScheduler; currentId(): the conversation shown; catchUp(): ask the server for
    // what the page lacks; silence: the SilenceWatch.
    constructor({ list, emptyState, stop, hooks, renders, currentId, catchUp, silence }) {
      this.list = list;
      this.emptyState = emptyState;
      this.stop = stop;
      this.hooks = hooks;
      this.renders = renders;
      this.currentId = currentId;
      this.catchUp = catchUp;
      this.silence = silence;
      this.views = new Map(); // message id -> MessageView
      // Messages a `thread` took off the page (another branch): their late frames are not
      // theirs to show.
      this.offBranch = new Set();
      this.locked = false;
    }

    addOrUpdateMessage(message, replaces) {
      let view = this.views.get(message.id);
      if (view) {
        view.guessed = false;
        view.heard();
        // A repeated `message` frame of a streaming answer carries no text the page does
        // not already have, nor does one of an ending already shown. An ended answer that
        // streams again ("continue") starts over from the stored text the frame carries,
        // and an answer shown as streaming that the frame says has ended takes its final
        // state (a subscribe's catch-up, after the `done` was lost).
        if (!(view.streaming && message.status === "streaming") && !view.endedAs(message)) view.update(message);
        else view.showVersions(message.sibling_ids);
      } else {
        this.offBranch.delete(message.id);
        view = new MessageView(message, this.hooks);
        view.lock(this.locked);
        this.views.set(message.id, view);
        const old = (replaces !== undefined && this.views.get(replaces)) || this.views.get(this.olderBranchOf(message));
        if (old) {
          // "Retry": the new answer takes the old one's place (the server keeps the old
          // one as another branch of the conversation).
          old.el.replaceWith(view.el);
          this.views.delete(old.id);
          this.offBranch.add(old.id);
          this.renders.forget(old);
        } else {
          this.insertInOrder(view.el, message.id);
        }
      }
      this.emptyState.hidden = true;
      this.renders.follow();
      this.refreshStreamingControls();
      return view;
    }

    // A `thread`: the branch the conversation shows now replaces the page's. Views of
    // messages on both stay as they are (a streaming answer keeps its seq and text).
    replace(messages) {
      const keep = new Set(messages.map((m) => m.id));
      for (const view of [...this.views.values()]) {
        if (keep.has(view.id)) continue;
        this.views.delete(view.id);
        this.offBranch.add(view.id);
        this.renders.forget(view);
        view.el.remove();
      }
      for (const message of messages) this.addOrUpdateMessage(message);
      this.list.append(...messages.map((m) => this.views.get(m.id).el));
      this.emptyState.hidden = messages.length > 0;
    }

    // Ids grow with time, so id order is the conversation's order, whatever order the
    // frames came in (a catch-up after a gap must not put an answer above its question).
    insertInOrder(el, id) {
      let before = this.list.lastElementChild;
      while (before && Number(before.dataset.messageId) > id) before = before.previousElementSibling;
      if (before) before.after(el);
      else this.list.prepend(el);
    }

    // A subscribe's catch-up sends a retry's answer without `replaces`; it is an answer to
    // the same question as one shown, and the newer one is the conversation's branch.
    olderBranchOf(message) {
      if (message.role !== "assistant" || message.parent_id == null) return undefined;
      for (const view of this.views.values()) {
        if (view.role === "assistant" && view.id < message.id && view.message.parent_id === message.parent_id) {
          return view.id;
        }
      }
      return undefined;
    }

    // A frame for a message this page never saw (its `message` frame was sent while the
    // socket was down): show it as a streaming answer and let the seq logic catch up.
    // Guessed, it does not count as held for `after_id`, so the subscribe still asks for
    // the messages before it.
    viewFor(messageId) {
      let view = this.views.get(messageId);
      if (!view) {
        view = this.addOrUpdateMessage({
          id: messageId,
          conversation_id: this.currentId(),
          role: "assistant",
          status: "streaming",
          content: "",
        });
        view.guessed = true;
        // Its `message` frame, and its question's, were lost (a broadcast while Redis was
        // down): catch up from the database, which sends what came after the newest
        // message this page really has.
        this.catchUp();
      }
      return view;
    }

    // The server answers a subscribe with what this page lacks (docs/websocket.md): the
    // messages after the newest one it has, and for each answer it shows as streaming,
    // the text after the last seq applied, or the answer's ending.
    subscribeFrame(conversationId) {
      const frame = {
        type: "subscribe",
        conversation_id: conversationId,
        holding: this.unsettledViews()
          .slice(-HOLDING_MAX)
          .map((view) => ({ message_id: view.id, last_seq: view.lastSeq })),
      };
      let newest = null;
      for (const view of this.views.values()) if (!view.guessed && (newest === null || view.id > newest)) newest = view.id;
      if (newest !== null) frame.after_id = newest;
      // What the page shows, so that a branch switched or an edit made elsewhere while it
      // was away comes back as the whole thread.
      frame.shown = [...this.list.children]
        .map((el) => this.views.get(Number(el.dataset.messageId)))
        .filter((view) => view && !view.guessed)
        .map((view) => view.id);
      return frame;
    }

    // A frame about a message of a branch a `thread` took away: not for this page to show.
    notShown(messageId) {
      return this.offBranch.has(messageId) && !this.views.has(messageId);
    }

    streamingViews() {
      const views = [];
      for (const view of this.views.values()) if (view.role === "assistant" && view.streaming) views.push(view);
      return views.sort((a, b) => a.id - b.id);
    }

    streamingView() {
      return this.streamingViews().pop() || null;
    }

    // Answers whose real ending the page may still have to learn: those streaming, and
    // those shown as not saved (the server stores the ending later and sends a second
    // `done`, which a Redis outage or a dropped socket can lose).
    unsettledViews() {
      const views = this.streamingViews();
      for (const view of this.views.values()) {
        if (view.role === "assistant" && !view.streaming && view.message.error_code === "not_saved") views.push(view);
        // A tool still running: its result may come while the socket is down.
        if (view.role === "tool" && view.streaming) views.push(view);
      }
      return views.sort((a, b) => a.id - b.id);
    }

    refreshStreamingControls() {
      const streaming = this.streamingView();
      if (this.locked !== Boolean(streaming)) {
        this.locked = Boolean(streaming);
        for (const view of this.views.values()) view.lock(this.locked);
      }
      this.stop.hidden = !streaming;
      if (!streaming) {
        this.stop.disabled = false;
        this.stop.querySelector(".btn-label").textContent = gettext("Stop");
      }
      if (this.unsettledViews().length) this.silence.start();
    }
  }

  window.MessageThread = MessageThread;
})();
