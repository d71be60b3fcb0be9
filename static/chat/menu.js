// A small menu that opens from a button (a conversation's "⋯", "Export all"): a list of
// actions and links, reached by keyboard (arrows, Home, End; Esc or Tab closes it and
// focus goes back to its button), by mouse and by touch. One element serves every button;
// it lives outside the sidebar so that the sidebar's scrolling never clips it.
(function () {
  "use strict";

  const GAP = 4;

  class PopupMenu {
    constructor(el) {
      this.el = el;
      this.opener = null;
      this.el.addEventListener("keydown", (event) => this.keydown(event));
      this.el.addEventListener("click", (event) => {
        const item = event.target.closest("[role=menuitem]");
        if (!item || !this.actions.has(item)) return;
        const action = this.actions.get(item);
        // Links download on their own; the menu closes either way.
        this.close(!item.href);
        if (action) action();
      });
      document.addEventListener("pointerdown", (event) => {
        if (this.isOpen && !this.el.contains(event.target) && !this.opener.contains(event.target)) this.close(false);
      });
      window.addEventListener("resize", () => this.close(false));
      this.actions = new Map();
    }

    get isOpen() {
      return !this.el.hidden;
    }

    // items: {label, action} for a button, {label, href} for a download link, `danger`
    // for a destructive one. The same opener again closes it.
    toggle(opener, items, byKeyboard) {
      if (this.isOpen && this.opener === opener) {
        this.close(true);
        return;
      }
      this.open(opener, items, byKeyboard);
    }

    open(opener, items, byKeyboard) {
      if (this.isOpen) this.close(false);
      this.opener = opener;
      this.actions = new Map();
      this.el.replaceChildren(
        ...items.map((item) => {
          const node = document.createElement(item.href ? "a" : "button");
          node.className = `menu-item${item.danger ? " is-danger" : ""}`;
          node.setAttribute("role", "menuitem");
          node.tabIndex = -1;
          node.textContent = item.label;
          if (item.href) {
            node.href = item.href;
            node.setAttribute("download", "");
          } else {
            node.type = "button";
          }
          this.actions.set(node, item.action || null);
          return node;
        }),
      );
      this.el.hidden = false;
      opener.setAttribute("aria-expanded", "true");
      this.place(opener);
      // A pointer opens it without moving focus into it; a keyboard puts focus on the first item.
      (byKeyboard ? this.items()[0] : this.el).focus({ preventScroll: true });
    }

    place(opener) {
      const box = opener.getBoundingClientRect();
      const width = this.el.offsetWidth;
      const height = this.el.offsetHeight;
      const left = Math.max(GAP, Math.min(box.right - width, window.innerWidth - width - GAP));
      const below = box.bottom + GAP;
      const top = below + height <= window.innerHeight - GAP ? below : Math.max(GAP, box.top - height - GAP);
      this.el.style.left = `${left}px`;
      this.el.style.top = `${top}px`;
    }

    close(refocus) {
      if (!this.isOpen) return;
      this.el.hidden = true;
      const opener = this.opener;
      if (opener) {
        opener.setAttribute("aria-expanded", "false");
        if (refocus && opener.isConnected) opener.focus();
      }
    }

    items() {
      return [...this.el.querySelectorAll("[role=menuitem]")];
    }

    keydown(event) {
      const items = this.items();
      const at = items.indexOf(document.activeElement);
      let next = null;
      if (event.key === "ArrowDown") next = items[(at + 1) % items.length];
      else if (event.key === "ArrowUp") next = items[(at - 1 + items.length) % items.length];
      else if (event.key === "Home") next = items[0];
      else if (event.key === "End") next = items[items.length - 1];
      else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.close(true);
        return;
      } else if (event.key === "Tab") {
        this.close(true);
        return;
      }
      if (next) {
        event.preventDefault();
        next.focus();
      }
    }
  }

  window.PopupMenu = PopupMenu;
})();
