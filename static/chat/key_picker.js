// The key <select>: which API key (and so which provider) a conversation's sends use.
// Filled from the page's own data (key-choices: the user's keys, masked, and whether the
// server's key may be used); the empty value is "the default": the user's default key,
// else the server's (chat/credentials.py). Every send carries the choice and the
// conversation remembers it.
(function () {
  "use strict";

  function keyText(key) {
    return `${key.label} · ${key.host} ···${key.last4}`;
  }

  class KeyPicker {
    constructor(select, choices) {
      this.select = select;
      this.choices = choices || { keys: [], server: { label: gettext("Server key"), host: "", usable: true } };
      this.byId = new Map(this.choices.keys.map((key) => [key.id, key]));
    }

    // What "the default" is for this person, in words.
    defaultText() {
      const preferred = this.choices.keys.find((key) => key.is_default);
      if (preferred) return interpolate(gettext("Default: %(key)s"), { key: keyText(preferred) }, true);
      const server = this.choices.server;
      if (!server.usable) return gettext("No key yet: add one on the Keys page");
      return `${server.label} · ${server.host}`;
    }

    fill(chosenId) {
      const options = [[ "", this.defaultText() ], ...this.choices.keys.map((key) => [String(key.id), keyText(key)])];
      const chosen = chosenId != null && this.byId.has(chosenId) ? String(chosenId) : "";
      this.select.replaceChildren(
        ...options.map(([value, text]) => {
          const option = document.createElement("option");
          option.value = value;
          option.textContent = text;
          option.selected = value === chosen;
          return option;
        }),
      );
    }

    // The id a send carries: null for the default.
    value() {
      return this.select.value ? Number(this.select.value) : null;
    }

    // How an answer's facts name the key that paid for it.
    describe(keyId) {
      const key = keyId != null ? this.byId.get(keyId) : null;
      if (key) return keyText(key);
      return keyId != null ? gettext("a key since deleted") : `${this.choices.server.label} · ${this.choices.server.host}`;
    }
  }

  window.KeyPicker = KeyPicker;
})();
