// The key <select>: which API key (and so which provider) a conversation's sends use.
// Filled from the page's own data (key-choices: the user's keys, masked, and whether the
// server's key may be used). The empty value is "the default": the user's default key,
// else the server's (chat/credentials.py); then each of their keys, and the server's key
// (or the offline simulator) once they have keys of their own, since their first key
// becomes their default and must not take the server's away. Every send carries the
// choice and the conversation remembers it.
(function () {
  "use strict";

  const SERVER = "server"; // chat/credentials.py's SERVER_KEY

  function keyText(key) {
    return `${key.label} · ${key.host} ···${key.last4}`;
  }

  class KeyPicker {
    constructor(select, choices) {
      this.select = select;
      this.choices = choices || { keys: [], server: { label: gettext("Server key"), host: "", usable: true } };
      this.byId = new Map(this.choices.keys.map((key) => [key.id, key]));
    }

    serverText() {
      return `${this.choices.server.label} · ${this.choices.server.host}`;
    }

    // With no key of their own the default is the only choice, so it is named plainly.
    serverOffered() {
      return this.choices.server.usable && this.choices.keys.length > 0;
    }

    // What "the default" is for this person, in words.
    defaultText() {
      const preferred = this.choices.keys.find((key) => key.is_default);
      if (preferred) return interpolate(gettext("Default: %(key)s"), { key: keyText(preferred) }, true);
      const server = this.choices.server;
      if (!server.usable) return gettext("No key yet: add one on the Keys page");
      if (this.serverOffered()) return interpolate(gettext("Default: %(key)s"), { key: this.serverText() }, true);
      return this.serverText();
    }

    fill(chosen) {
      const options = [
        ["", this.defaultText()],
        ...this.choices.keys.map((key) => [String(key.id), keyText(key)]),
        ...(this.serverOffered() ? [[SERVER, this.serverText()]] : []),
      ];
      const wanted = chosen === SERVER ? SERVER : chosen != null && this.byId.has(chosen) ? String(chosen) : "";
      const value = options.some(([option]) => option === wanted) ? wanted : "";
      this.select.replaceChildren(
        ...options.map(([option, text]) => {
          const element = document.createElement("option");
          element.value = option;
          element.textContent = text;
          element.selected = option === value;
          return element;
        }),
      );
    }

    // What a send carries: a key's id, "server", or null for the default.
    value() {
      const value = this.select.value;
      if (!value) return null;
      return value === SERVER ? SERVER : Number(value);
    }

    // How an answer's facts name the key that paid for it.
    describe(keyId) {
      if (keyId === SERVER) return this.serverText();
      const key = keyId != null ? this.byId.get(keyId) : null;
      if (key) return keyText(key);
      return keyId != null ? gettext("a key since deleted") : this.serverText();
    }
  }

  window.KeyPicker = KeyPicker;
})();
