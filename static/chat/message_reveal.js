// Opening a conversation at one of its messages (/c/<id>/#m<message id>, or ?m=): the page
// scrolls to it instead of the end, marks it for a moment, and, when a search result led
// here, marks the words searched for inside it. The words are marked with the CSS Custom
// Highlight API, which paints ranges without touching the answer's DOM. A tool's result
// (a `role: "tool"` message) has no bubble: its view's `reveal()` opens its card inside the
// answer that made the call (tool_cards.js), and that card is what is shown and marked.
(function () {
  "use strict";

  const HIGHLIGHT = "search-match";
  // Long answers above it are still being rendered in pieces for a moment, which moves it:
  // it is scrolled to again each frame for this long, unless the person scrolls first.
  const HOLD_MS = 2000;

  function messageIdAsked() {
    const hash = /^#m(\d+)$/.exec(location.hash);
    if (hash) return Number(hash[1]);
    const query = new URLSearchParams(location.search).get("m");
    return query && /^\d+$/.test(query) ? Number(query) : null;
  }

  function takeQuery(messageId) {
    try {
      const saved = JSON.parse(sessionStorage.getItem(window.ConversationSearch.REVEAL_KEY) || "null");
      sessionStorage.removeItem(window.ConversationSearch.REVEAL_KEY);
      return saved && saved.messageId === messageId && typeof saved.query === "string" ? saved.query : "";
    } catch (err) {
      return "";
    }
  }

  // Ranges of `query` (any case) in the text under `root`, within single text nodes.
  function rangesOf(root, query) {
    const ranges = [];
    const needle = query.toLowerCase();
    if (!needle) return ranges;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const haystack = node.data.toLowerCase();
      // toLowerCase keeps lengths for the scripts searched here (CJK, Latin); if it did
      // not, the offsets would be wrong, so such a node is skipped.
      if (haystack.length !== node.data.length) continue;
      for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + needle.length)) {
        const range = document.createRange();
        range.setStart(node, at);
        range.setEnd(node, at + needle.length);
        ranges.push(range);
      }
    }
    return ranges;
  }

  class MessageReveal {
    constructor(scroller) {
      this.scroller = scroller;
      this.target = null;
      this.query = "";
      this.view = null;
      this.el = null; // what is scrolled to: the message, or a tool result's card
      this.until = 0;
      const stop = () => {
        this.until = 0;
      };
      for (const kind of ["wheel", "touchstart", "keydown", "pointerdown"]) {
        scroller.addEventListener(kind, stop, { passive: true });
      }
    }

    // The message the address asks for, if any: what the page shows first.
    want() {
      this.target = messageIdAsked();
      this.query = this.target === null ? "" : takeQuery(this.target);
      this.view = null;
      return this.target;
    }

    get waiting() {
      return this.target !== null && this.view === null;
    }

    show(view) {
      this.view = view;
      this.el = typeof view.reveal === "function" ? view.reveal() : view.el;
      this.until = performance.now() + HOLD_MS;
      // The message marked for a moment: a card's is its answer's.
      const flash = this.el.closest(".message") || this.el;
      flash.classList.remove("is-revealed");
      void flash.offsetWidth; // restart the animation if it was shown already
      flash.classList.add("is-revealed");
      flash.addEventListener("animationend", () => flash.classList.remove("is-revealed"), { once: true });
      this.mark();
      this.scroll();
    }

    // Called on each rendered frame: true while it holds the scroll position.
    keep() {
      if (!this.view || performance.now() > this.until) return false;
      if (!this.el.isConnected) {
        this.until = 0;
        return false;
      }
      this.mark();
      this.scroll();
      return true;
    }

    mark() {
      if (!this.query || !window.CSS || !CSS.highlights || typeof Highlight === "undefined") return;
      this.ranges = rangesOf(this.view.body, this.query);
      CSS.highlights.set(HIGHLIGHT, new Highlight(...this.ranges));
    }

    scroll() {
      const scroller = this.scroller;
      const frame = scroller.getBoundingClientRect();
      const first = this.ranges && this.ranges[0];
      const box = first ? first.getBoundingClientRect() : this.el.getBoundingClientRect();
      // The words searched for in the middle of the view; else the message, its start if
      // it is taller than the view.
      const middle = box.height < frame.height ? box.top + box.height / 2 - frame.height / 2 : box.top - 16;
      scroller.scrollTop += middle - frame.top;
    }
  }

  window.MessageReveal = MessageReveal;
})();
