// What a send must be before it goes: a client_id of its own, and not too long for the
// server or for one websocket frame. Used by the composer and by the editor of an earlier
// question (chat.js, question_editor.js), so that both refuse in the same words.
(function () {
  "use strict";

  // Daphne drops a websocket message over 1 MiB without a word: the text would be lost
  // from the box, and the page would reconnect and send it again, 2-3 times a second.
  const FRAME_MAX_BYTES = 1000000;

  function newClientId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    // randomUUID exists only on https:// and localhost; a LAN address over http has not.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function thousands(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  // Characters as the server counts them (Python's len: code points, not UTF-16 units).
  function characterCount(text) {
    let pairs = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff) {
        const next = text.charCodeAt(i + 1);
        if (next >= 0xdc00 && next <= 0xdfff) {
          pairs++;
          i++;
        }
      }
    }
    return text.length - pairs;
  }

  // Why a send cannot go, before it goes: too long for the server (its own sentence,
  // docs/websocket.md `message_too_long`) or too big for one websocket frame; null if it can.
  function sendRefusal(frame, messageMaxChars) {
    const characters = characterCount(frame.text);
    if (characters > messageMaxChars) {
      return interpolate(
        gettext("That message is too long (%(count)s characters; the limit is %(limit)s). Shorten it or split it."),
        { count: thousands(characters), limit: thousands(messageMaxChars) },
        true,
      );
    }
    const bytes = new TextEncoder().encode(JSON.stringify(frame)).length;
    if (bytes > FRAME_MAX_BYTES) {
      return interpolate(
        gettext("That message is too long to send (%(count)s bytes; the limit is %(limit)s). Shorten it or split it."),
        { count: thousands(bytes), limit: thousands(FRAME_MAX_BYTES) },
        true,
      );
    }
    return null;
  }

  window.SendChecks = { newClientId, sendRefusal };
})();
