// A tab that hears nothing asks again (docs/websocket.md, "How a tab stays in step"). A
// `done` can be lost on its way with the socket still open (a broadcast while Redis is
// down); the server answers a subscribe from the database, so a tab that has heard
// nothing for a while about an answer it shows as streaming asks again. For a live
// answer that costs an empty snapshot. One subscribe covers every answer held, so at
// most one per SILENCE_MS whatever their number; the timer runs only while one is held.
(function () {
  "use strict";

  const SILENCE_MS = 3000;
  const TICK_MS = 1000;

  class SilenceWatch {
    // unsettled(): the views whose ending the page may still have to learn (each with
    // lastHeardAt); canAsk(now): the socket is open and no subscribe went for SILENCE_MS;
    // ask(): subscribe again.
    constructor({ unsettled, canAsk, ask }) {
      this.unsettled = unsettled;
      this.canAsk = canAsk;
      this.ask = ask;
      this.timer = null;
    }

    start() {
      if (this.timer === null) this.timer = setInterval(() => this.tick(), TICK_MS);
    }

    tick() {
      const held = this.unsettled();
      if (!held.length) {
        clearInterval(this.timer);
        this.timer = null;
        return;
      }
      const now = performance.now();
      if (!this.canAsk(now)) return;
      if (held.some((view) => now - view.lastHeardAt >= SILENCE_MS)) this.ask();
    }
  }

  SilenceWatch.SILENCE_MS = SILENCE_MS;
  window.SilenceWatch = SilenceWatch;
})();
