// What the page does with each frame the server sends (docs/websocket.md), by its type:
// the conversation this tab shows, its thread and messages (message_thread.js), its
// answers' text as it streams (message_view.js), the sidebar, and refusals.
(function () {
  "use strict";

  // Each is called with the FrameHandlers as `this`.
  const HANDLERS = {
    subscribed(frame) {
      // The server moves the socket to the conversation a send from here created.
      if (typeof frame.conversation_id === "number") this.adoptConversation(frame.conversation_id);
      // Opened at a message of another branch: show that branch.
      const state = this.state;
      if (this.reveal.waiting && !state.revealBranchAsked && frame.conversation_id === state.conversationId) {
        state.revealBranchAsked = true;
        this.socket.send({ type: "branch", message_id: this.reveal.target });
      }
    },
    thread(frame) {
      const { state, thread, reveal, renders } = this;
      if (frame.conversation_id !== state.conversationId || !Array.isArray(frame.messages)) return;
      const editing = state.editing;
      if (editing && frame.messages.some((m) => m.client_id === editing.clientId)) state.editing = null;
      const anchor = state.anchor;
      state.anchor = null;
      thread.replace(frame.messages);
      const stepped = anchor && thread.views.get(anchor.id);
      if (reveal.waiting && thread.views.has(reveal.target)) {
        reveal.show(thread.views.get(reveal.target));
      } else if (stepped) {
        // Another version of a message: it stays where the one it replaced was.
        renders.pinned = false;
        renders.scroller.scrollTop += stepped.el.getBoundingClientRect().top - anchor.top;
      } else if (!reveal.keep()) {
        renders.pinned = true;
        renders.follow();
      }
    },
    conversation(frame) {
      const conversation = frame.conversation;
      // Every tab of the person hears of a new conversation; the client_id says which
      // tab's send made it.
      if (frame.client_id && this.pendings.has(frame.client_id)) {
        this.adoptConversation(conversation.id);
      }
      if (conversation.id === this.state.conversationId) this.conversationShown(conversation);
      this.sidebar.changed(conversation);
    },
    conversation_updated(frame) {
      if (frame.conversation.id === this.state.conversationId) this.conversationShown(frame.conversation);
      this.sidebar.changed(frame.conversation);
    },
    conversation_deleted(frame) {
      this.sidebar.deleted(frame.conversation_id);
    },
    message(frame) {
      const message = frame.message;
      if (message.conversation_id !== undefined && message.conversation_id !== this.state.conversationId) return;
      const stored = message.role === "user" ? this.pendings.takeStored(message) : null;
      if (stored) this.composer.tray.discard(stored.chips);
      if (message.attachments && message.attachments.length) this.sidebar.holdsImages(this.state.conversationId);
      this.thread.addOrUpdateMessage(message, frame.replaces);
    },
    snapshot(frame) {
      if (this.thread.notShown(frame.message_id)) return;
      this.thread.viewFor(frame.message_id).snapshot(frame);
      this.thread.refreshStreamingControls(); // it may have reopened an answer shown as ended
    },
    delta(frame) {
      if (this.thread.notShown(frame.message_id)) return;
      this.thread.viewFor(frame.message_id).delta(frame);
      this.address.soon();
    },
    retrying(frame) {
      if (this.thread.notShown(frame.message_id)) return;
      this.thread.viewFor(frame.message_id).retrying(frame);
    },
    queued(frame) {
      if (this.thread.notShown(frame.message_id)) return;
      this.thread.viewFor(frame.message_id).queued(frame);
    },
    done(frame) {
      const thread = this.thread;
      const view = thread.views.get(frame.message_id);
      if (view) {
        view.guessed = false;
        this.renders.forget(view);
        view.done(frame);
      } else if (!thread.notShown(frame.message_id) && this.parentShown(frame.message)) {
        thread.addOrUpdateMessage(frame.message);
      }
      thread.refreshStreamingControls();
      this.renders.follow();
      this.address.soon();
      this.address.answered(frame.message && frame.message.conversation_id);
    },
    error(frame) {
      if (this.sidebar.refused(frame)) return;
      const state = this.state;
      const editing = state.editing;
      if (editing && frame.client_id && frame.client_id === editing.clientId) {
        state.editing = null;
        if (editing.view.editor) {
          editing.view.editor.showError(frame.message || interpolate(gettext("The server refused the edit (%(code)s)."), frame, true));
          return;
        }
      }
      const refused = frame.client_id ? this.pendings.takeRefused(frame.client_id) : null;
      if (refused) {
        this.composer.restoreDraft(refused.text);
        this.composer.tray.unlock(refused.chips);
      }
      this.showError(frame.message || interpolate(gettext("The server refused the request (%(code)s)."), frame, true));
    },
  };

  class FrameHandlers {
    // state: the page's {conversation, conversationId, editing, anchor, revealBranchAsked};
    // thread: the MessageThread; renders: the RenderScheduler; reveal: the MessageReveal;
    // socket, sidebar, pendings (PendingSends), address (TabAddress), composer;
    // showError(sentence); conversationShown(conversation): the pickers, settings, title
    // and facts show it; catchUp(): ask the server for what the page lacks.
    constructor(page) {
      Object.assign(this, page);
    }

    handle(frame) {
      const handler = HANDLERS[frame.type];
      if (handler) handler.call(this, frame);
    }

    // A send from the home page made a conversation: this tab now shows it.
    adoptConversation(conversationId) {
      if (this.state.conversationId !== null || !this.pendings.adopt(conversationId)) return;
      this.state.conversationId = conversationId;
      this.sidebar.markCurrent(conversationId);
      this.address.wait(conversationId);
    }

    // A `done` for an answer the page does not show is taken up only below its question.
    parentShown(message) {
      if (message.parent_id == null || this.thread.views.has(message.parent_id)) return true;
      // Its question's `message` frame was lost too: the database has both.
      this.catchUp();
      return false;
    }
  }

  window.FrameHandlers = FrameHandlers;
})();
