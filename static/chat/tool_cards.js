// Tool use on the chat page (issue 16; docs/tools.md, docs/websocket.md "Tools").
//
// ToolPicker: the composer's Tools control, tools on or off and the `tool_choice` in each
// of the reference's forms (auto, none, required, one named tool). A conversation's own
// settings come with it; a new chat starts from the last choice made here. With tools on
// and a model that calls none, it says so and offers yi-large-fc in one click.
//
// Cards: an answer that asks for tools ends with `tool_calls`, then each call's result
// comes as a `role: "tool"` message (streaming while the tool runs). Those messages are
// not chat bubbles: message_view.js hands each one to a ToolMessageView here, whose
// element is an empty, hidden marker in the list (it keeps the page's ids and order as
// the server's), and which fills its call's card inside the answer that made the call.
// Tool output, arguments and names are untrusted: everything is set with textContent.
(function () {
  "use strict";

  const STORAGE_KEY = "yiweb.tools";
  const TOOL_MODEL = "yi-large-fc";
  const FORMS = [
    ["auto", gettext("Auto: the model decides")],
    ["none", gettext("None: answer without tools")],
    ["required", gettext("Required: call a tool")],
  ];
  // A preview of a result in a collapsed card's line: the whole result is inside.
  const PREVIEW_CHARS = 120;

  function element(tag, className, attributes) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  // --- The Tools control ----------------------------------------------------------------

  // "function:calculator" <-> {"type": "function", "function": {"name": "calculator"}}
  function choiceValue(choice) {
    if (choice && typeof choice === "object" && choice.function && typeof choice.function.name === "string") {
      return `function:${choice.function.name}`;
    }
    return typeof choice === "string" ? choice : "auto";
  }

  function choiceOf(value) {
    if (value.startsWith("function:")) return { type: "function", function: { name: value.slice(9) } };
    return value;
  }

  function storedChoice() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
      return saved && typeof saved.tools === "boolean" ? saved : null;
    } catch (err) {
      return null; // storage disabled (private mode), or not ours
    }
  }

  class ToolPicker {
    // toggle: the checkbox; choice: the tool_choice <select>; hint: where the page says
    // the model calls no tools (with its switch button); model: the model <select>;
    // tools: [{name, description}] from the page (chat/views.py).
    constructor({ toggle, choice, hint, model, tools }) {
      this.toggle = toggle;
      this.select = choice;
      this.hint = hint;
      this.hintText = hint.querySelector(".tool-hint-text");
      this.switchButton = hint.querySelector(".tool-hint-switch");
      this.model = model;
      this.names = (tools || []).map((tool) => tool.name);
      const forms = FORMS.map(([value, text]) => {
        const option = element("option", "", { value });
        option.textContent = text;
        return option;
      });
      const named = element("optgroup", "", { label: gettext("Always call this tool") });
      for (const tool of tools || []) {
        const option = element("option", "", { value: `function:${tool.name}`, title: tool.description || "" });
        option.textContent = tool.name;
        named.append(option);
      }
      this.select.replaceChildren(...forms, ...(named.children.length ? [named] : []));
      const changed = () => {
        this.select.disabled = !this.toggle.checked;
        this.remember();
        this.refreshHint();
      };
      this.toggle.addEventListener("change", changed);
      this.select.addEventListener("change", changed);
      this.model.addEventListener("change", () => this.refreshHint());
      // The model list is filled (and refilled for another key) after the page loads.
      new MutationObserver(() => this.refreshHint()).observe(this.model, { childList: true });
      this.switchButton.addEventListener("click", () => {
        this.model.value = TOOL_MODEL;
        this.model.dispatchEvent(new Event("change", { bubbles: true }));
        this.model.focus();
      });
    }

    // A conversation's settings (its dict), or for a new chat the last choice made here.
    fill(conversation) {
      const from = conversation && typeof conversation.tools === "boolean" ? conversation : storedChoice();
      this.toggle.checked = Boolean(from && from.tools);
      const value = choiceValue(from && from.tool_choice);
      const known = [...this.select.options].some((option) => option.value === value);
      this.select.value = known ? value : "auto"; // a tool since removed: the model decides
      this.select.disabled = !this.toggle.checked;
      this.refreshHint();
    }

    get on() {
      return this.toggle.checked;
    }

    choice() {
      return choiceOf(this.select.value || "auto");
    }

    remember() {
      try {
        localStorage.setItem(STORAGE_KEY, JSON.stringify({ tools: this.on, tool_choice: this.choice() }));
      } catch (err) {
        /* private mode: the choice lasts for this page only */
      }
    }

    // Said only of a model the list says calls no tools (model_picker.js marks each).
    refreshHint() {
      const option = this.model.selectedOptions[0];
      const callsNone = this.on && option && option.dataset.tools === "false";
      this.hint.hidden = !callsNone;
      if (!callsNone) return;
      const offered = [...this.model.options].some((o) => o.value === TOOL_MODEL);
      this.hintText.textContent = offered
        ? interpolate(gettext("%(model)s does not call tools."), { model: option.value }, true)
        : interpolate(gettext("%(model)s is not known to call tools; the provider decides."), { model: option.value }, true);
      this.switchButton.hidden = !offered;
    }
  }

  // --- Cards ----------------------------------------------------------------------------

  function duration(ms) {
    if (typeof ms !== "number") return "";
    if (ms < 1) return "<1 ms";
    return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  // JSON shown indented; anything else (a model's broken arguments) as it is.
  function pretty(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (err) {
      return text;
    }
  }

  // What a failed call's result says: the registry writes {"error": "<sentence>"}.
  function errorSentence(content) {
    try {
      const parsed = JSON.parse(content);
      if (parsed && typeof parsed.error === "string") return parsed.error;
    } catch (err) {
      /* not JSON: the text itself */
    }
    return content;
  }

  function oneLine(text) {
    const flat = text.replace(/\s+/g, " ").trim();
    return flat.length > PREVIEW_CHARS ? `${flat.slice(0, PREVIEW_CHARS - 1)}…` : flat;
  }

  class ToolCard {
    constructor(callId) {
      this.callId = callId;
      this.el = element("details", "tool-card", { "data-tool-call-id": callId, "data-state": "waiting" });
      const summary = element("summary", "tool-card-summary");
      this.icon = element("span", "tool-card-icon", { "aria-hidden": "true" });
      this.name = element("code", "tool-card-name");
      this.state = element("span", "tool-card-state");
      this.time = element("span", "tool-card-time");
      summary.append(this.icon, this.name, this.state, this.time);
      const body = element("div", "tool-card-body");
      const argumentsLabel = element("p", "tool-card-label");
      argumentsLabel.textContent = gettext("Arguments");
      this.arguments = element("pre", "tool-card-arguments");
      const resultLabel = element("p", "tool-card-label");
      resultLabel.textContent = gettext("Result");
      this.result = element("pre", "tool-card-result");
      body.append(argumentsLabel, this.arguments, resultLabel, this.result);
      this.el.append(summary, body);
      this.message = null;
      this.show();
    }

    // The call as the answer asked for it: {id, type, function: {name, arguments}}.
    call(call) {
      const fn = (call && call.function) || {};
      this.called = { name: String(fn.name ?? ""), arguments: String(fn.arguments ?? "") };
      this.show();
    }

    // The `role: "tool"` message that holds the call's result.
    answered(message) {
      this.message = message;
      this.show();
    }

    show() {
      const called = this.called || {};
      const message = this.message;
      this.name.textContent = called.name || (message && message.name) || "tool";
      this.arguments.textContent = this.called ? pretty(called.arguments) || "{}" : "…";
      let state;
      let text;
      if (!message) {
        state = "waiting";
        text = gettext("no result");
      } else if (message.status === "streaming") {
        state = "running";
        text = gettext("running…");
      } else if (message.status === "complete" && !message.error_code) {
        state = "done";
        text = oneLine(message.content || "");
      } else if (message.status === "stopped") {
        state = "stopped";
        text = gettext("stopped");
      } else {
        state = "failed";
        text = interpolate(
          gettext("failed: %(reason)s"),
          { reason: oneLine(errorSentence(message.content || "") || message.error_message || message.status) },
          true,
        );
      }
      this.el.dataset.state = state;
      this.icon.className = state === "running" ? "tool-card-icon spinner" : "tool-card-icon";
      this.state.textContent = text;
      this.time.textContent = message && message.status !== "streaming" ? duration(message.duration_ms) : "";
      this.result.textContent = !message
        ? gettext("No result was stored.")
        : state === "running"
          ? gettext("Running…")
          : pretty(message.content || "");
    }
  }

  const cards = new Map(); // "<answer id>:<tool_call_id>" -> ToolCard
  const toolParents = new Map(); // tool message id -> parent id

  function cardFor(answerId, callId) {
    const key = `${answerId}:${callId}`;
    let card = cards.get(key);
    if (!card) {
      card = new ToolCard(callId);
      cards.set(key, card);
    }
    return card;
  }

  // The answer a tool message's call came from: its parents are the tool messages of the
  // same round before it, then the answer.
  function answerOf(message) {
    let id = message.parent_id;
    while (toolParents.has(id)) id = toolParents.get(id);
    return id;
  }

  // The cards' place inside an answer: below its text.
  function cardsBox(answerEl) {
    let box = answerEl.querySelector(":scope > .message-inner > .tool-cards");
    if (!box) {
      box = element("div", "tool-cards", { role: "group", "aria-label": gettext("Tools used") });
      const body = answerEl.querySelector(":scope > .message-inner > .message-body");
      if (body) body.after(box);
      else answerEl.append(box);
    }
    return box;
  }

  function answerElement(answerId) {
    return document.querySelector(`.message-assistant[data-message-id="${Number(answerId)}"]`);
  }

  // The hook in MessageView.update for an answer: a card for each call it made, in order.
  function showCalls(view, message) {
    const calls = Array.isArray(message.tool_calls) ? message.tool_calls.filter((c) => c && typeof c === "object") : [];
    if (!calls.length && !view.el.querySelector(".tool-cards")) return;
    const box = cardsBox(view.el);
    for (const call of calls) {
      const card = cardFor(view.id, String(call.id ?? ""));
      card.call(call);
      box.append(card.el); // in the order of the calls (moves it if a result placed it first)
    }
    box.hidden = box.children.length === 0;
  }

  // A `role: "tool"` message as the page holds it: what message_thread.js asks of a
  // MessageView (id, role, el, message, streaming, lastSeq, heard, update, done, ...), with
  // no bubble.
  class ToolMessageView {
    constructor(message, hooks) {
      this.id = message.id;
      this.role = "tool";
      this.hooks = hooks;
      this.lastSeq = 0;
      this.lastHeardAt = performance.now();
      this.ending = null;
      this.el = element("div", "tool-message-marker", { "data-message-id": String(message.id), "data-role": "tool" });
      this.el.hidden = true;
      this.card = null;
      this.update(message);
    }

    get streaming() {
      return this.message.status === "streaming";
    }

    // message_reveal.js marks words inside a message's body.
    get body() {
      return this.card ? this.card.el : this.el;
    }

    heard() {
      this.lastHeardAt = performance.now();
    }

    // message_reveal.js showing this message (a search result led here): its card, opened.
    // The marker stands in while the card has no answer on the page to sit in.
    reveal() {
      if (!this.card || !this.card.el.isConnected) return this.el;
      this.card.el.open = true;
      return this.card.el;
    }

    endedAs(message) {
      return this.ending !== null && this.ending === JSON.stringify([message.status, message.content, message.error_code]);
    }

    update(message) {
      this.heard();
      this.message = message;
      this.ending = message.status === "streaming" ? null : JSON.stringify([message.status, message.content, message.error_code]);
      if (typeof message.seq === "number") this.lastSeq = message.seq;
      toolParents.set(message.id, message.parent_id);
      const answerId = answerOf(message);
      this.card = cardFor(answerId, String(message.tool_call_id || ""));
      this.card.answered(message);
      // Placed now if its answer is on the page; else when the answer shows its calls.
      const answerEl = answerElement(answerId);
      if (answerEl && !this.card.el.isConnected) {
        const box = cardsBox(answerEl);
        box.append(this.card.el);
        box.hidden = false;
      }
      this.el.dataset.status = message.status;
    }

    done(frame) {
      this.heard();
      if (!this.endedAs(frame.message)) this.update(frame.message);
    }

    // A tool message has no text deltas; a snapshot of one still running says nothing new.
    delta() {
      this.heard();
    }

    snapshot() {
      this.heard();
    }

    retrying() {}

    queued() {}

    showVersions() {}

    lock() {}

    tickRetry() {
      return false;
    }

    render() {
      return false;
    }
  }

  window.ToolPicker = ToolPicker;
  window.ToolCards = {
    showCalls,
    view: (message, hooks) => new ToolMessageView(message, hooks),
  };
})();
