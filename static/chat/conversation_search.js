// The sidebar's search box: answered as the person types (GET /api/search, ~150 ms after
// the last key, a newer query aborting the older one), its results in place of the list
// while the box has text. Each result is the conversation's title and a snippet with the
// matches marked, built from the server's [text, is_match] parts as text nodes and <mark>
// elements (the snippet is model output: never innerHTML), and opens the conversation at
// that message (/c/<id>/#m<message id>; a tool's result, said as "calculator result:",
// opens at its card).
(function () {
  "use strict";

  const DEBOUNCE_MS = 150;
  // Where a result hands the reveal its query (message_reveal.js marks it in the message).
  const REVEAL_KEY = "yiweb.reveal";

  function element(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  const shortDate = new Intl.DateTimeFormat(document.documentElement.lang || undefined, { month: "short", day: "numeric" });
  const longDate = new Intl.DateTimeFormat(document.documentElement.lang || undefined, { dateStyle: "medium" });

  function dateText(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return "";
    return (when.getFullYear() === new Date().getFullYear() ? shortDate : longDate).format(when);
  }

  // The text before the first match, at most this long: the row shows three lines, and in
  // Chinese the server's snippet can put the match on the sixth.
  const LEAD_CHARS = 24;

  function snippet(parts) {
    const node = element("span", "search-result-snippet");
    const list = Array.isArray(parts) ? parts.filter(Array.isArray) : [];
    for (const [index, [raw, isMatch]] of list.entries()) {
      let text = String(raw);
      if (index === 0 && !isMatch && list.length > 1 && [...text].length > LEAD_CHARS) {
        // From a word's start where there are words.
        const lead = [...text].slice(-LEAD_CHARS).join("");
        text = `…${lead.replace(/^\S{0,12}\s/, "")}`;
      }
      if (isMatch) {
        const mark = element("mark");
        mark.textContent = text;
        node.append(mark);
      } else {
        node.append(document.createTextNode(text));
      }
    }
    return node;
  }

  class ConversationSearch {
    // input: the search box; panel: shown instead of the list while there are results;
    // list: the results' <ol>; status: a live region; onActive(active): the box has text.
    constructor({ input, panel, list, status, searchUrl, conversationUrl, onActive }) {
      this.input = input;
      this.panel = panel;
      this.list = list;
      this.status = status;
      this.searchUrl = searchUrl;
      this.conversationUrl = conversationUrl;
      this.onActive = onActive;
      this.timer = null;
      this.request = null;
      this.query = "";

      input.addEventListener("input", () => this.changed());
      input.addEventListener("keydown", (event) => this.keydown(event));
      list.addEventListener("keydown", (event) => this.resultsKeydown(event));
      list.addEventListener("click", (event) => {
        const link = event.target.closest("a[data-message-id]");
        if (link) this.remember(Number(link.dataset.messageId));
      });
    }

    get active() {
      return this.input.value.trim() !== "";
    }

    focus() {
      this.input.focus();
      this.input.select();
    }

    clear() {
      this.input.value = "";
      this.changed();
    }

    changed() {
      clearTimeout(this.timer);
      const query = this.input.value.trim();
      this.panel.hidden = !query;
      this.onActive(Boolean(query));
      if (!query) {
        this.abort();
        this.query = "";
        this.list.replaceChildren();
        this.say("");
        return;
      }
      this.timer = setTimeout(() => this.run(query), DEBOUNCE_MS);
    }

    abort() {
      if (this.request) this.request.abort();
      this.request = null;
    }

    async run(query) {
      if (query === this.query && this.list.childElementCount) return;
      this.abort();
      const request = new AbortController();
      this.request = request;
      this.panel.setAttribute("aria-busy", "true");
      const url = new URL(this.searchUrl, location.href);
      url.searchParams.set("q", query);
      try {
        const response = await fetch(url, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
          signal: request.signal,
        });
        const body = await response.json().catch(() => null);
        if (request !== this.request) return;
        if (!response.ok || !body || !Array.isArray(body.results)) {
          this.show(query, [], (body && body.message) || interpolate(gettext("Search failed (HTTP %(status)s). Try again."), response, true));
        } else {
          this.show(query, body.results, null);
        }
      } catch (error) {
        if (error.name === "AbortError") return;
        this.show(query, [], gettext("Search failed: the server did not answer. Try again."));
      } finally {
        if (request === this.request) {
          this.request = null;
          this.panel.removeAttribute("aria-busy");
        }
      }
    }

    show(query, results, problem) {
      this.query = query;
      this.list.replaceChildren(...results.map((result) => this.resultItem(result)));
      if (problem) this.say(problem, true);
      else if (!results.length) this.say(interpolate(gettext("Nothing found for “%(query)s”."), { query }, true));
      else if (results.length >= 20) this.say(interpolate(gettext("%(count)s results (the newest 20)"), { count: results.length }, true));
      else this.say(interpolate(ngettext("%(count)s result", "%(count)s results", results.length), { count: results.length }, true));
    }

    say(text, failed) {
      this.status.textContent = text;
      this.status.hidden = !text;
      this.status.classList.toggle("is-error", Boolean(failed));
    }

    resultItem(result) {
      const item = element("li", "search-result");
      const link = element("a", "search-result-link");
      const messageId = result.message_id;
      link.href = this.conversationUrl(result.conversation_id) + (messageId ? `#m${messageId}` : "");
      if (messageId) link.dataset.messageId = String(messageId);
      const head = element("span", "search-result-head");
      const name = element("span", "search-result-title");
      name.textContent = result.conversation_title || gettext("New chat");
      const when = element("span", "search-result-date");
      when.textContent = dateText(result.updated_at);
      head.append(name, when);
      link.append(head);
      if (messageId) {
        const body = snippet(result.snippet);
        const who = element("span", "search-result-role");
        who.textContent = result.role === "tool"
          ? interpolate(gettext("%(tool)s result: "), { tool: result.tool_name || "tool" }, true)
          : result.role === "user" ? gettext("You: ") : gettext("Yi: ");
        body.prepend(who);
        link.append(body);
      } else {
        // The title matched: its marks are in the title itself.
        name.replaceChildren(...snippet(result.snippet).childNodes);
      }
      item.append(link);
      return item;
    }

    // The page opened at that message marks the words searched for (message_reveal.js).
    remember(messageId) {
      try {
        sessionStorage.setItem(REVEAL_KEY, JSON.stringify({ messageId, query: this.query }));
      } catch (err) {
        /* storage disabled: the message is still shown, without its words marked */
      }
    }

    links() {
      return [...this.list.querySelectorAll(".search-result-link")];
    }

    keydown(event) {
      if (event.key === "Escape" && this.input.value) {
        event.preventDefault();
        event.stopPropagation();
        this.clear();
      } else if (event.key === "ArrowDown" && this.links().length) {
        event.preventDefault();
        this.links()[0].focus();
      } else if (event.key === "Enter" && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        const first = this.links()[0];
        if (first) first.click();
      }
    }

    resultsKeydown(event) {
      const links = this.links();
      const at = links.indexOf(document.activeElement);
      if (at === -1) return;
      if (event.key === "ArrowDown" && at < links.length - 1) {
        event.preventDefault();
        links[at + 1].focus();
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        (at === 0 ? this.input : links[at - 1]).focus();
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.input.focus();
        this.clear();
      }
    }
  }

  ConversationSearch.REVEAL_KEY = REVEAL_KEY;
  window.ConversationSearch = ConversationSearch;
})();
