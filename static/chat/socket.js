// One websocket that comes back on its own. A dropped socket (server crash, network
// change, laptop sleep) is reopened after 0.5 s, 1 s, 2 s, … capped at 10 s, each delay
// jittered so that a restarted server is not hit by every tab in the same instant.
// A server that closes on purpose because it is stopping (a deploy) is left at once:
// another process is ready to take the tab, and every second waited is a second of a
// stale page. The owner re-subscribes in onOpen; frames sent while closed are refused
// (send() returns false) so the caller can keep the person's text instead of losing it.
(function () {
  "use strict";

  const FIRST_DELAY_MS = 500;
  const MAX_DELAY_MS = 10000;
  // The server stops, not the network failing: 1012 (service restart) and 1001 (going
  // away), and 4012, which yiweb sends for 1012 because a server may only send 1000 and
  // 3000-4999 (docs/websocket.md).
  const SERVER_STOPPING = new Set([1012, 1001, 4012]);
  // The server's close when the session that opened the socket has ended (chat.accounts).
  const SIGNED_OUT = 4401;
  // Spread over this window, the tabs of a stopping process do not all reach the next
  // process in the same instant.
  const STOPPING_JITTER_MS = 250;
  // A process still on its way out may take the new socket and close it again; reconnecting
  // at once every time would hammer it, so a second such close this soon backs off as usual.
  const STOPPING_AGAIN_MS = 1000;

  class ReconnectingSocket {
    constructor(url, handlers) {
      this.url = url;
      this.handlers = handlers; // onOpen(), onFrame(frame), onBadFrame(raw), onState(state, attempt), onSignedOut()
      this.ws = null;
      this.failures = 0;
      this.timer = null;
      this.stopped = false;
      this.stoppingReconnectAt = -Infinity;
    }

    get isOpen() {
      return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
    }

    connect() {
      clearTimeout(this.timer);
      this.timer = null;
      if (this.stopped || this.ws) return;
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (err) {
        this.retryLater();
        return;
      }
      this.ws = ws;
      ws.addEventListener("open", () => {
        this.failures = 0;
        this.handlers.onState("open", 0);
        this.handlers.onOpen();
      });
      ws.addEventListener("message", (event) => {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch (err) {
          this.handlers.onBadFrame(event.data);
          return;
        }
        if (frame && typeof frame.type === "string") this.handlers.onFrame(frame);
        else this.handlers.onBadFrame(event.data);
      });
      // "error" is always followed by "close", so only "close" reconnects.
      ws.addEventListener("close", (event) => {
        if (this.ws !== ws) return;
        this.ws = null;
        if (event.code === SIGNED_OUT) {
          // The session ended (signed out in another tab, expired, account deactivated):
          // reconnecting would only be refused again.
          this.stopped = true;
          if (this.handlers.onSignedOut) this.handlers.onSignedOut();
        } else if (SERVER_STOPPING.has(event.code)) this.reconnectSoon();
        else this.retryLater();
      });
    }

    // The server is stopping: not a failure, so the backoff does not grow.
    reconnectSoon() {
      if (this.stopped || this.timer) return;
      const now = performance.now();
      if (now - this.stoppingReconnectAt < STOPPING_AGAIN_MS) {
        this.retryLater();
        return;
      }
      this.stoppingReconnectAt = now;
      this.handlers.onState("reconnecting", this.failures);
      this.timer = setTimeout(() => this.connect(), Math.random() * STOPPING_JITTER_MS);
    }

    retryLater() {
      if (this.stopped || this.timer) return;
      const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.failures);
      const delay = ceiling / 2 + Math.random() * (ceiling / 2);
      this.failures += 1;
      this.handlers.onState("reconnecting", this.failures);
      this.timer = setTimeout(() => this.connect(), delay);
    }

    // Try now instead of waiting out the backoff (the browser says it is online again).
    reconnectNow() {
      if (this.stopped || this.ws) return;
      this.failures = 0;
      this.connect();
    }

    send(frame) {
      if (!this.isOpen) return false;
      this.ws.send(JSON.stringify(frame));
      return true;
    }

    // The page is going away: closing now is not a failure worth announcing.
    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      this.timer = null;
      if (this.ws) {
        const ws = this.ws;
        this.ws = null;
        ws.close();
      }
    }

    resume() {
      this.stopped = false;
      this.failures = 0;
      this.connect();
    }
  }

  window.ReconnectingSocket = ReconnectingSocket;
})();
