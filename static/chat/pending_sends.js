// Sends the server has not confirmed yet: each keeps its client_id, so that it can go
// again after a reconnect (the server ignores a client_id it has), be matched to the
// question the server stores, or come back to the box if the server refuses it.
(function () {
  "use strict";

  class PendingSends {
    constructor() {
      // {clientId, text, conversationId, model, keyId, tools, toolChoice, attachmentIds,
      // settings, chips (attachments.js: kept until the server stores the send), waiting
      // (typed before the socket was up)}
      this.list = [];
    }

    add(pending) {
      this.list.push(pending);
    }

    has(clientId) {
      return this.list.some((p) => p.clientId === clientId);
    }

    // The same text, typed before the socket was up, is already waiting to go.
    waitingWith(text) {
      return this.list.some((p) => p.waiting && p.text === text);
    }

    frame(pending) {
      const frame = {
        type: "send",
        conversation_id: pending.conversationId,
        text: pending.text,
        model: pending.model,
        key_id: pending.keyId,
        tools: pending.tools,
        tool_choice: pending.toolChoice,
        client_id: pending.clientId,
        ...pending.settings,
      };
      if (pending.attachmentIds.length) frame.attachment_ids = pending.attachmentIds;
      return frame;
    }

    // The socket opened. A send whose confirmation was lost with the old socket goes again
    // with the same client_id: the server ignores it if the first one arrived. One typed
    // before the socket was up goes now; those are returned (they leave the box).
    sendAll(send) {
      const waited = [];
      for (const pending of this.list) {
        send(this.frame(pending));
        if (pending.waiting) {
          pending.waiting = false;
          waited.push(pending);
        }
      }
      return waited;
    }

    // A send from the home page made a conversation: the sends without one are in it.
    // Whether there were any.
    adopt(conversationId) {
      const ours = this.list.filter((p) => p.conversationId === null);
      for (const pending of ours) pending.conversationId = conversationId;
      return ours.length > 0;
    }

    // Our own send, stored: by its client_id when the message carries one; else by its text
    // and its images, in the order sent. Two sends of images alone never match each other:
    // an upload goes with one send only. Taken off the list and returned, or null.
    takeStored(message) {
      return this.takeAt(this.indexOf(message));
    }

    // The send the server refused (by client_id), taken off the list, or null.
    takeRefused(clientId) {
      return this.takeAt(this.list.findIndex((p) => p.clientId === clientId));
    }

    indexOf(message) {
      if (message.client_id) return this.list.findIndex((p) => p.clientId === message.client_id);
      const text = (message.content || "").trim();
      const images = (message.attachments || []).map((a) => a.id).sort((a, b) => a - b).join();
      return this.list.findIndex(
        (p) => p.text.trim() === text && [...p.attachmentIds].sort((a, b) => a - b).join() === images,
      );
    }

    takeAt(index) {
      return index === -1 ? null : this.list.splice(index, 1)[0];
    }
  }

  window.PendingSends = PendingSends;
})();
