// The tab's address and title for a new conversation.
// Changing them sets the browser's own interface to work (its address bar and tab
// strip, in processes of their own), and with many windows streaming on a small machine
// that work lands on the other pages' first tokens (bench/browser.py, docs/benchmarks.md).
// So the address waits until the answer's first text is painted, or ADDRESS_WAIT_MS at
// most: a reload needs it soon. The title waits until the first answer ends, as in other
// chat products (the tab keeps the new chat's title until then): nothing needs it sooner,
// and the title the model writes for the conversation comes only after that answer anyway.
(function () {
  "use strict";

  const ADDRESS_WAIT_MS = 1000;

  class TabAddress {
    // url(id): a conversation's address; currentId(): the conversation shown; title():
    // its title, if it has one yet.
    constructor({ url, currentId, title }) {
      this.url = url;
      this.currentId = currentId;
      this.title = title;
      this.due = null; // {conversationId, timer, soon} while the address waits
      this.titleDue = null; // the conversation whose first answer the title waits for
    }

    // The tab now shows a conversation a send from it made: its address and title wait.
    wait(conversationId) {
      this.due = { conversationId, timer: setTimeout(() => this.show(), ADDRESS_WAIT_MS) };
      this.titleDue = conversationId;
    }

    // Text of the answer came (or its end): the address comes after the frame that paints it.
    soon() {
      if (this.due === null || this.due.soon) return;
      this.due.soon = true;
      requestAnimationFrame(() => setTimeout(() => this.show(), 0)); // after the frame that paints the text
    }

    show() {
      if (this.due === null) return;
      clearTimeout(this.due.timer);
      const { conversationId } = this.due;
      this.due = null;
      if (this.currentId() !== conversationId) return;
      history.replaceState({ conversationId }, "", this.url(conversationId));
    }

    // An answer ended: if it is the first of the conversation the title waits for, the title comes.
    answered(conversationId) {
      if (this.titleDue === null || this.titleDue !== conversationId) return;
      this.titleDue = null;
      this.showTitle();
    }

    showTitle() {
      if (this.titleDue !== null && this.titleDue === this.currentId()) return; // its first answer is not over
      this.titleDue = null;
      const title = this.title();
      document.title = `${title || gettext("New chat")} · yiweb`;
    }
  }

  window.TabAddress = TabAddress;
})();
