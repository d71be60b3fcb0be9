// The tab's address and title: after the answer's first text.
// Changing them sets the browser's own interface to work (its address bar and tab
// strip, in processes of their own): with ten windows streaming on two cores, that put
// 150-250 ms on each page's first token (bench/browser.py, docs/benchmarks.md). So a
// new conversation's address and title wait until its answer's first text is painted,
// or ADDRESS_WAIT_MS at most.
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
      this.due = null; // {conversationId, timer, soon} while they wait
    }

    // The tab now shows a conversation a send from it made: its address and title wait.
    wait(conversationId) {
      this.due = { conversationId, timer: setTimeout(() => this.show(), ADDRESS_WAIT_MS) };
    }

    // Text of the answer came (or its end): they come after the frame that paints it.
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
      this.showTitle();
    }

    showTitle() {
      if (this.due !== null) return; // it comes with the address
      const title = this.title();
      document.title = `${title || gettext("New chat")} · yiweb`;
    }
  }

  window.TabAddress = TabAddress;
})();
