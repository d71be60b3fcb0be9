// What a conversation and each of its answers were, for rereading: the conversation's
// model and system prompt; an answer's model, tokens, cost, time to first token, duration,
// parameters and how it ended. Everything is set with textContent: the system prompt and
// error sentences are text, never markup.
(function () {
  "use strict";

  function element(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  function seconds(ms) {
    return `${(ms / 1000).toFixed(ms < 1000 ? 2 : 1)} s`;
  }

  // "0.000600" -> "$0.0006", "1.500000" -> "$1.50": exact (the server sends a string), with
  // the zeros that say nothing left off.
  function dollars(cost) {
    const [whole, fraction = ""] = String(cost).split(".");
    return `$${whole}.${fraction.replace(/0+$/, "").padEnd(2, "0")}`;
  }

  function count(n) {
    return Number(n).toLocaleString("en-US");
  }

  // How it ended, said plainly; the error's own sentence is the server's.
  function endingText(message) {
    switch (message.status) {
      case "stopped":
        return gettext("Stopped before the end.");
      case "interrupted":
        return message.error_message || gettext("Interrupted: the server stopped while answering.");
      case "error":
        return interpolate(
          gettext("Failed: %(reason)s"),
          { reason: message.error_message || message.error_code || gettext("unknown error") },
          true,
        );
      case "complete":
        if (message.error_code === "not_saved") return message.error_message || gettext("Ended, but not saved yet.");
        if (message.finish_reason === "length") return gettext("Cut off: it reached the longest answer allowed (max_tokens).");
        if (message.finish_reason === "tool_calls") return gettext("Ended by asking to use a tool.");
        return gettext("Complete.");
      default:
        return message.status;
    }
  }

  // Only what the answer was sent with: a parameter left out was the model's default.
  function paramsText(params) {
    const names = ["temperature", "top_p", "max_tokens"].filter((name) => params[name] !== undefined && params[name] !== null);
    return names.length ? names.map((name) => `${name} ${params[name]}`).join(" · ") : gettext("the model's defaults");
  }

  // picked: the model the conversation asked for; an answer from another one (a message
  // with images goes to a model that takes them) says so.
  function summaryText(message, picked) {
    const parts = [];
    if (message.model) parts.push(picked && message.model !== picked ? interpolate(gettext("Answered by %(model)s"), message, true) : message.model);
    const usage = message.usage || {};
    // An estimate (the answer ended before the API said what it used) is said as one.
    const tokens = usage.estimated ? gettext("about %(count)s tokens") : gettext("%(count)s tokens");
    if (usage.completion_tokens) parts.push(interpolate(tokens, { count: count(usage.completion_tokens) }, true));
    if (message.cost_usd) parts.push(usage.estimated ? interpolate(gettext("about %(cost)s"), { cost: dollars(message.cost_usd) }, true) : dollars(message.cost_usd));
    if (message.duration_ms) parts.push(`${(message.duration_ms / 1000).toFixed(1)} s`);
    return parts.join(" · ");
  }

  function factRows(message) {
    const rows = [];
    const usage = message.usage || {};
    if (message.model) rows.push([gettext("Model"), message.model]);
    if (usage.prompt_tokens != null || usage.completion_tokens != null) {
      rows.push([
        gettext("Tokens"),
        interpolate(
          usage.estimated
            ? gettext("about %(in)s in, %(out)s out (estimated: the answer ended before the API said what it used)")
            : gettext("%(in)s in, %(out)s out"),
          { in: count(usage.prompt_tokens || 0), out: count(usage.completion_tokens || 0) },
          true,
        ),
      ]);
    }
    const cost = message.cost_usd && (usage.estimated ? interpolate(gettext("about %(cost)s"), { cost: dollars(message.cost_usd) }, true) : dollars(message.cost_usd));
    rows.push([gettext("Cost"), cost || gettext("not known for this model")]);
    if (message.ttft_ms != null) rows.push([gettext("First token after"), seconds(message.ttft_ms)]);
    if (message.duration_ms != null) rows.push([gettext("Duration"), seconds(message.duration_ms)]);
    if (message.params && typeof message.params === "object") rows.push([gettext("Parameters"), paramsText(message.params)]);
    if (AnswerFacts.keyName) rows.push([gettext("Key"), AnswerFacts.keyName(message.key_id)]);
    rows.push([gettext("Ended"), endingText(message)]);
    return rows;
  }

  function fillList(list, rows) {
    list.replaceChildren(
      ...rows.flatMap(([name, value]) => {
        const term = element("dt");
        term.textContent = name;
        const detail = element("dd");
        detail.textContent = value;
        return [term, detail];
      }),
    );
  }

  // An answer's facts: one short line, which opens to all of them.
  class AnswerFacts {
    constructor() {
      this.el = element("details", "message-facts");
      this.summary = element("summary", "message-meta");
      this.list = element("dl", "facts-list");
      this.el.append(this.summary, this.list);
      this.el.hidden = true;
      this.key = "";
    }

    show(message, picked) {
      if (message.status === "streaming") {
        this.el.hidden = true;
        this.summary.textContent = "";
        this.key = "";
        return;
      }
      const rows = factRows(message);
      const summary = summaryText(message, picked) || gettext("Details");
      const key = JSON.stringify([summary, rows]);
      this.el.hidden = false;
      if (key === this.key) return;
      this.key = key;
      this.summary.textContent = summary;
      fillList(this.list, rows);
    }
  }

  // The conversation's own facts, above its messages.
  class ConversationFacts {
    constructor(details) {
      this.el = details;
      this.summary = details.querySelector("summary");
      this.list = details.querySelector("dl");
    }

    show(conversation) {
      this.el.hidden = !conversation;
      if (!conversation) return;
      const prompt = conversation.system_prompt || "";
      this.summary.textContent = `${conversation.model} · ${prompt ? gettext("with a system prompt") : gettext("no system prompt")}`;
      const started = conversation.created_at
        ? new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }).format(new Date(conversation.created_at))
        : "";
      const rows = [[gettext("Model"), conversation.model], [gettext("System prompt"), prompt || gettext("None")]];
      // What its next answers are sent with (each answer's own facts say what it had).
      if (conversation.params) rows.push([gettext("Parameters"), paramsText(conversation.params)]);
      if (ConversationFacts.keyName) rows.push([gettext("Key"), ConversationFacts.keyName(conversation.key_id)]);
      if (started) rows.push([gettext("Started"), started]);
      fillList(this.list, rows);
      this.list.querySelectorAll("dd")[1].classList.add("facts-prompt");
    }
  }

  window.AnswerFacts = AnswerFacts;
  window.ConversationFacts = ConversationFacts;
})();
