// The conversation's settings: its system prompt, temperature, top_p and max_tokens, in a
// dialog (templates/chat/_conversation_settings.html). They ride on the next send (and
// edit, and retry) as that frame's fields, and the conversation keeps them from then on
// (docs/websocket.md): a frame carries only the settings that differ from what the
// conversation has, so a tab that missed another's change never sends back stale ones.
// A new conversation starts from the person's defaults ("Save as my defaults": POST
// /preferences/defaults/). Each value is checked against the reference's ranges, and
// max_tokens against the picked model's window, beside its field and again before a send,
// in the server's own words (chat/input_checks.py).
(function () {
  "use strict";

  const PARAMS = ["temperature", "top_p", "max_tokens"];
  const FIELDS = ["system_prompt", ...PARAMS];
  const WHAT = {
    temperature: gettext("Lower is more focused, higher more varied."),
    top_p: gettext(
      "Sampling from the likeliest tokens whose chances add up to this; change it or the temperature, not both.",
    ),
    max_tokens: gettext("The longest answer allowed."),
  };

  function thousands(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  // A conversation's (or the defaults') settings as the dialog holds them: the system
  // prompt as text, each parameter a number or null (the API's default).
  function settingsOf(source) {
    const params = (source && source.params) || {};
    const values = { system_prompt: (source && source.system_prompt) || "" };
    for (const name of PARAMS) values[name] = typeof params[name] === "number" ? params[name] : null;
    return values;
  }

  function same(a, b) {
    return FIELDS.every((name) => a[name] === b[name]);
  }

  class ConversationSettings {
    // dialog, button; model: the model <select>; defaults: {system_prompt, params};
    // limits: {ranges: {name: {min, max, default}}, windows: {model: tokens}}; csrfToken.
    constructor({ dialog, button, model, defaults, limits, csrfToken }) {
      this.dialog = dialog;
      this.button = button;
      this.model = model;
      this.limits = limits || { ranges: {}, windows: {} };
      this.defaults = settingsOf(defaults);
      this.csrfToken = csrfToken;
      this.form = dialog.querySelector("form");
      this.status = dialog.querySelector("#settings-status");
      this.inputs = Object.fromEntries(FIELDS.map((name) => [name, dialog.querySelector(`[name="${name}"]`)]));
      this.stored = null; // the conversation's settings as the server has them (null: a new conversation)
      this.values = { ...this.defaults }; // what the next send goes with
      this.listen();
      this.marked();
    }

    listen() {
      this.button.addEventListener("click", () => this.open());
      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        const values = this.checked();
        if (!values) return;
        this.values = values;
        this.marked();
        this.close();
      });
      this.dialog.querySelector("#settings-cancel").addEventListener("click", () => this.close());
      this.dialog.querySelector("#settings-defaults-save").addEventListener("click", () => this.saveDefaults());
      // Esc (the dialog's own cancel) closes it, as Cancel does.
      this.dialog.addEventListener("cancel", (event) => {
        event.preventDefault();
        this.close();
      });
      this.dialog.addEventListener("close", () => this.button.focus());
      for (const name of FIELDS) this.inputs[name].addEventListener("input", () => this.fieldError(name, ""));
    }

    // The conversation shown (null: a new one, from the defaults). The same conversation
    // again (another tab's send changed its settings): taken up unless this page has
    // changes of its own not sent yet.
    show(conversation) {
      const stored = conversation ? settingsOf(conversation) : null;
      const sameConversation = conversation && this.conversationId === conversation.id;
      const untouched = same(this.values, this.stored || this.defaults);
      if (!sameConversation || untouched) this.values = { ...(stored || this.defaults) };
      this.conversationId = conversation ? conversation.id : null;
      this.stored = stored;
      this.marked();
    }

    // The settings a frame carries: for a new conversation, those set; else those changed
    // since the conversation's (null: back to the API's default).
    frameFields() {
      const fields = {};
      for (const name of FIELDS) {
        const value = this.values[name];
        if (this.stored ? value !== this.stored[name] : value !== null && value !== "") fields[name] = value;
      }
      return fields;
    }

    windowOf(model) {
      const windows = this.limits.windows || {};
      const range = this.limits.ranges.max_tokens || { max: 32768 };
      return windows[model] || range.max;
    }

    // The range a value must be in, and the sentence the server says when it is not.
    range(name, model) {
      const range = this.limits.ranges[name] || {};
      let max = range.max;
      let why = "";
      if (name === "max_tokens") {
        max = this.windowOf(model);
        if (model && max < range.max) why = interpolate(gettext(" (%(model)s's context window)"), { model }, true);
      }
      const sentence = interpolate(
        gettext("%(name)s must be a number from %(min)s to %(max)s%(why)s."),
        { name, min: range.min, max, why },
        true,
      );
      return { min: range.min, max, sentence };
    }

    // Why a send cannot go with these settings on `model`, or null.
    refusal(model) {
      for (const name of PARAMS) {
        const value = this.values[name];
        if (value === null) continue;
        const range = this.range(name, model);
        if (value < range.min || value > range.max) {
          return interpolate(gettext("%(sentence)s Change it in the conversation's settings."), range, true);
        }
      }
      return null;
    }

    open() {
      const model = this.model.value;
      for (const name of FIELDS) {
        const value = this.values[name];
        this.inputs[name].value = value === null ? "" : String(value);
        this.fieldError(name, "");
      }
      for (const name of PARAMS) {
        const range = this.range(name, model);
        const input = this.inputs[name];
        input.min = String(range.min);
        input.max = String(range.max);
        const fallback = this.limits.ranges[name] ? this.limits.ranges[name].default : null;
        input.placeholder = fallback === null ? gettext("API decides") : String(fallback);
        const bound = name === "max_tokens" && model && range.max < (this.limits.ranges[name] || {}).max
          ? interpolate(gettext(", %(model)s's context window"), { model }, true) : "";
        const usual = fallback === null ? "" : interpolate(gettext(" The API's default is %(value)s."), { value: fallback }, true);
        this.dialog.querySelector(`#settings-${name}-hint`).textContent = interpolate(
          gettext("From %(min)s to %(max)s%(bound)s.%(usual)s %(what)s"),
          { min: thousands(range.min), max: thousands(range.max), bound, usual, what: WHAT[name] },
          true,
        );
      }
      this.status.textContent = "";
      if (!this.dialog.open) this.dialog.showModal();
      this.inputs.system_prompt.focus();
    }

    close() {
      if (this.dialog.open) this.dialog.close();
    }

    fieldError(name, sentence) {
      const error = this.dialog.querySelector(`#settings-${name}-error`);
      error.textContent = sentence;
      error.hidden = !sentence;
      if (sentence) this.inputs[name].setAttribute("aria-invalid", "true");
      else this.inputs[name].removeAttribute("aria-invalid");
    }

    // The dialog's values, each in range (max_tokens within `model`'s window; without a
    // model, the general bound, as for the defaults); null, with the errors beside their
    // fields and the first of them focused, when one is not.
    checked(model = this.model.value) {
      const values = { system_prompt: this.inputs.system_prompt.value };
      let first = null;
      for (const name of PARAMS) {
        const input = this.inputs[name];
        const text = input.value.trim();
        // A number input holding what is not a number reads "" but is badInput.
        if (text === "" && !input.validity.badInput) {
          values[name] = null;
          continue;
        }
        const number = Number(text);
        const range = this.range(name, model);
        const whole = name !== "max_tokens" || Number.isInteger(number);
        if (text === "" || !Number.isFinite(number) || !whole || number < range.min || number > range.max) {
          this.fieldError(name, range.sentence);
          first = first || input;
        } else {
          values[name] = number;
        }
      }
      if (first) {
        first.focus();
        // Its error too, above the buttons that stay in sight (a phone's dialog scrolls).
        this.dialog.querySelector(`#settings-${first.name}-error`).scrollIntoView({ block: "nearest" });
        return null;
      }
      return values;
    }

    async saveDefaults() {
      const values = this.checked(null);
      if (!values) return;
      this.status.textContent = gettext("Saving…");
      let response = null;
      let data = null;
      try {
        response = await fetch(this.form.dataset.defaultsUrl, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": this.csrfToken },
          credentials: "same-origin",
          body: JSON.stringify(values),
        });
        data = await response.json().catch(() => null);
      } catch (err) {
        this.status.textContent = gettext("Your defaults could not be saved: the server did not answer. Try again.");
        return;
      }
      if (response.ok && data && data.defaults) {
        this.defaults = settingsOf(data.defaults);
        this.status.textContent = gettext("Saved as your defaults: new conversations start with these settings.");
      } else if (data && data.field && this.inputs[data.field]) {
        this.status.textContent = "";
        this.fieldError(data.field, data.message);
        this.inputs[data.field].focus();
        this.dialog.querySelector(`#settings-${data.field}-error`).scrollIntoView({ block: "nearest" });
      } else {
        this.status.textContent = (data && data.message) || interpolate(gettext("Your defaults could not be saved (HTTP %(status)s)."), response, true);
      }
    }

    // The button says when the conversation's next message goes with settings of its own.
    marked() {
      const set = this.values.system_prompt !== "" || PARAMS.some((name) => this.values[name] !== null);
      this.button.classList.toggle("is-set", set);
      this.button.setAttribute("aria-description", set ? gettext("Some are set") : gettext("All at the API's defaults"));
    }
  }

  window.ConversationSettings = ConversationSettings;
})();
