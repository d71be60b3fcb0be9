// One list of the sidebar (the conversations, or the archived ones): pinned first, then
// newest first, under date headings in the browser's own time zone (Today, Yesterday,
// Previous 7 days, Previous 30 days, then by month), loaded a page at a time as the
// sidebar scrolls (GET /api/conversations, its `next` cursor), and kept in step with
// what other tabs change. Titles are text (textContent), never markup.
(function () {
  "use strict";

  const DAY_MS = 86400000;
  const SVG = "http://www.w3.org/2000/svg";

  function element(tag, className, attributes) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  function icon(paths, size) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", String(size));
    svg.setAttribute("height", String(size));
    svg.setAttribute("aria-hidden", "true");
    for (const [d, fill] of paths) {
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", d);
      path.setAttribute("fill", fill ? "currentColor" : "none");
      if (!fill) {
        path.setAttribute("stroke", "currentColor");
        path.setAttribute("stroke-width", "2");
        path.setAttribute("stroke-linecap", "round");
        path.setAttribute("stroke-linejoin", "round");
      }
      svg.append(path);
    }
    return svg;
  }

  const IMAGE_ICON = [["M4 5h16v14H4zM4 16l5-5 4 4 3-3 4 4", false], ["M16 9.5a1.5 1.5 0 1 1-3 0 1.5 1.5 0 0 1 3 0", true]];
  const MORE_ICON = [["M5 12h.01M12 12h.01M19 12h.01", false]];
  const PIN_ICON = [["M9 4h6l-1 6 3 3H7l3-3zM12 13v7", false]];

  function title(conversation) {
    return conversation.title || gettext("New chat");
  }

  // Pinned first, then the most recently used, then the newest id: the server's order.
  function compare(a, b) {
    if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
    const at = Date.parse(a.updated_at) || 0;
    const bt = Date.parse(b.updated_at) || 0;
    if (at !== bt) return bt - at;
    return b.id - a.id;
  }

  // Whole calendar days between two moments, in the browser's time zone (a day of a
  // daylight-saving change is still one day).
  function daysBetween(earlier, later) {
    const day = (d) => Date.UTC(d.getFullYear(), d.getMonth(), d.getDate());
    return Math.round((day(later) - day(earlier)) / DAY_MS);
  }

  const monthName = new Intl.DateTimeFormat(document.documentElement.lang || undefined, { month: "long", year: "numeric" });

  function groupOf(conversation, now) {
    if (conversation.pinned) return ["pinned", gettext("Pinned")];
    const when = new Date(conversation.updated_at);
    if (Number.isNaN(when.getTime())) return ["today", gettext("Today")];
    const days = daysBetween(when, now);
    if (days <= 0) return ["today", gettext("Today")];
    if (days === 1) return ["yesterday", gettext("Yesterday")];
    if (days <= 7) return ["week", gettext("Previous 7 days")];
    if (days <= 30) return ["month", gettext("Previous 30 days")];
    return [`${when.getFullYear()}-${when.getMonth() + 1}`, monthName.format(when)];
  }

  // Puts `children` in `parent` in this order, moving only what is out of place (a row
  // being renamed keeps its focus), and removes the rest.
  function place(parent, children) {
    let cursor = parent.firstElementChild;
    for (const child of children) {
      if (child === cursor) cursor = cursor.nextElementSibling;
      else parent.insertBefore(child, cursor);
    }
    while (cursor) {
      const next = cursor.nextElementSibling;
      cursor.remove();
      cursor = next;
    }
  }

  class ConversationList {
    // root: this list's element in the sidebar; scroller: what scrolls it; archived: which
    // list; apiUrl: GET /api/conversations; conversationUrl(id); emptyText.
    constructor({ root, scroller, archived, apiUrl, conversationUrl, emptyText }) {
      this.root = root;
      this.archived = archived;
      this.apiUrl = apiUrl;
      this.conversationUrl = conversationUrl;
      this.rows = new Map(); // id -> {data, el}
      this.next = undefined; // the next page's cursor; null: all loaded; undefined: none yet
      this.loading = null;
      this.currentId = null;
      this.groups = element("div", "conversation-groups");
      this.empty = element("p", "conversation-empty");
      this.empty.textContent = emptyText;
      this.empty.hidden = true;
      this.status = element("p", "list-status", { role: "status" });
      this.status.hidden = true;
      this.sentinel = element("div", "list-sentinel", { "aria-hidden": "true" });
      this.root.replaceChildren(this.groups, this.empty, this.status, this.sentinel);
      this.sections = new Map(); // group key -> section element
      this.observer = new IntersectionObserver((entries) => {
        if (entries.some((entry) => entry.isIntersecting)) this.more();
      }, { root: scroller, rootMargin: "0px 0px 240px 0px" });
      this.observer.observe(this.sentinel);
    }

    get loaded() {
      return this.next !== undefined;
    }

    // The first page, as the server put it in the page.
    seed(conversations, next) {
      for (const conversation of conversations) this.put(conversation);
      this.next = next || null;
      this.render();
    }

    async load() {
      if (this.loaded || this.loading) return this.loading;
      return this.fetchPage(null);
    }

    more() {
      if (this.root.hidden || this.loading || !this.next) return;
      this.fetchPage(this.next);
    }

    fetchPage(after) {
      const url = new URL(this.apiUrl, location.href);
      url.searchParams.set("archived", this.archived ? "1" : "0");
      if (after) url.searchParams.set("after", after);
      this.showStatus(gettext("Loading…"));
      this.loading = fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(async (response) => {
          const body = await response.json().catch(() => null);
          if (!response.ok || !body || !Array.isArray(body.conversations)) {
            throw new Error((body && body.message) || interpolate(gettext("The list could not be loaded (HTTP %(status)s)."), response, true));
          }
          for (const conversation of body.conversations) this.put(conversation);
          this.next = body.next || null;
          this.showStatus("");
          this.render();
        })
        .catch((error) => {
          this.showStatus(
            error instanceof TypeError ? gettext("The list could not be loaded: the server did not answer.") : error.message,
            true,
          );
        })
        .finally(() => {
          this.loading = null;
          // Still at the end of what is shown (a tall window): the observer says so again.
          this.observer.unobserve(this.sentinel);
          if (this.next) this.observer.observe(this.sentinel);
        });
      return this.loading;
    }

    showStatus(text, failed) {
      this.status.replaceChildren();
      this.status.hidden = !text;
      if (!text) return;
      const sentence = element("span");
      sentence.textContent = text;
      this.status.append(sentence);
      this.status.classList.toggle("is-error", Boolean(failed));
      if (failed) {
        const again = element("button", "btn btn-small btn-ghost", { type: "button" });
        again.textContent = gettext("Try again");
        again.addEventListener("click", () => (this.loaded ? this.more() : this.load()));
        this.status.append(again);
      }
    }

    // A conversation this list should show, as the server describes it now: added, or
    // changed in place. One past the pages loaded so far is left for its page, so that
    // no page brings it twice or leaves a gap.
    upsert(conversation) {
      if (!this.loaded) return;
      const row = this.rows.get(conversation.id);
      if (!row && this.next && this.lastRow() && compare(conversation, this.lastRow()) > 0) return;
      this.put(conversation);
      this.render();
    }

    remove(id) {
      const row = this.rows.get(id);
      if (!row) return null;
      this.rows.delete(id);
      row.el.remove();
      this.render();
      return row.data;
    }

    get(id) {
      const row = this.rows.get(id);
      return row ? row.data : null;
    }

    element(id) {
      const row = this.rows.get(id);
      return row ? row.el : null;
    }

    ids() {
      return this.sorted().map((data) => data.id);
    }

    lastRow() {
      const sorted = this.sorted();
      return sorted[sorted.length - 1] || null;
    }

    sorted() {
      return [...this.rows.values()].map((row) => row.data).sort(compare);
    }

    put(conversation) {
      const row = this.rows.get(conversation.id);
      const data = { ...(row ? row.data : {}), ...conversation };
      // A new conversation's frame does not say whether it holds images (null): keep what is known.
      if (conversation.has_images == null) data.has_images = row ? row.data.has_images : false;
      if (row) {
        row.data = data;
        this.fill(row.el, data);
      } else {
        const el = this.build(data);
        this.rows.set(data.id, { data, el });
      }
    }

    build(data) {
      const item = element("li", "conversation-item", { "data-conversation-id": String(data.id) });
      const check = element("input", "conversation-check", { type: "checkbox" });
      const link = element("a", "conversation-link", { href: this.conversationUrl(data.id) });
      const name = element("span", "conversation-title");
      const pin = element("span", "conversation-pin", { role: "img", "aria-label": gettext("Pinned") });
      pin.append(icon(PIN_ICON, 14));
      const images = element("span", "conversation-images", {
        role: "img", "aria-label": gettext("Has images"), title: gettext("Has images"),
      });
      images.append(icon(IMAGE_ICON, 14));
      link.append(name, pin, images);
      const more = element("button", "conversation-more", { type: "button", "aria-haspopup": "menu", "aria-expanded": "false" });
      more.append(icon(MORE_ICON, 18));
      item.append(check, link, more);
      this.fill(item, data);
      return item;
    }

    fill(item, data) {
      const name = title(data);
      item.querySelector(".conversation-title").textContent = name;
      item.querySelector(".conversation-link").title = name;
      item.querySelector(".conversation-check").setAttribute("aria-label", interpolate(gettext("Select “%(title)s”"), { title: name }, true));
      item.querySelector(".conversation-more").setAttribute("aria-label", interpolate(gettext("Options for “%(title)s”"), { title: name }, true));
      item.querySelector(".conversation-images").hidden = !data.has_images;
      item.querySelector(".conversation-pin").hidden = !data.pinned;
      item.dataset.updatedAt = data.updated_at || "";
      item.dataset.pinned = data.pinned ? "true" : "false";
    }

    markCurrent(id) {
      this.currentId = id;
      for (const [rowId, row] of this.rows) {
        const current = rowId === id;
        row.el.classList.toggle("is-current", current);
        const link = row.el.querySelector(".conversation-link");
        if (current) link.setAttribute("aria-current", "page");
        else link.removeAttribute("aria-current");
      }
    }

    render() {
      const now = new Date();
      const order = [];
      const members = new Map();
      for (const data of this.sorted()) {
        const [key, label] = groupOf(data, now);
        if (!members.has(key)) {
          members.set(key, []);
          order.push([key, label]);
        }
        members.get(key).push(this.rows.get(data.id).el);
      }
      const sections = order.map(([key, label]) => {
        let section = this.sections.get(key);
        if (!section) {
          section = element("section", "conversation-group", { "data-group": key });
          const heading = element("h3", "conversation-group-heading");
          heading.textContent = label;
          section.append(heading, element("ul", "conversation-list"));
          this.sections.set(key, section);
        }
        place(section.querySelector("ul"), members.get(key));
        return section;
      });
      for (const key of [...this.sections.keys()]) if (!members.has(key)) this.sections.delete(key);
      place(this.groups, sections);
      this.empty.hidden = this.rows.size > 0 || !this.loaded;
      if (this.currentId !== null) this.markCurrent(this.currentId);
    }
  }

  ConversationList.compare = compare;
  window.ConversationList = ConversationList;
})();
