// Rendering the answers' new text: at once while the page keeps up, else once per
// animation frame; and following the bottom of the conversation while the person has not
// scrolled away from it. MessageView asks for its renders here (hooks.scheduleRender).
(function () {
  "use strict";

  // What a frame may spend on rendering answers; a view with more to do (a long answer
  // shown in pieces) is rendered on in the next frame.
  const FRAME_BUDGET_MS = 12;
  // A tab the browser does not paint gets no animation frames (hidden), or one a second
  // (Chromium's tabs behind another in a window: docs/benchmarks.md, bench/browser.py):
  // text waiting for one would reach the DOM up to a second late. A frame not come this
  // long after it was asked for is not waited for: the next frame that arrives, or a
  // timer, renders instead.
  const FRAME_LATE_MS = 50;
  // Text that arrives while the page keeps up goes into the DOM at once: waiting for the
  // next animation frame adds up to a whole frame (16.7 ms at 60 Hz) to every token. A
  // page that does not keep up waits for frames again, and a frame renders every token
  // since the last one, so that rendering costs no more than the frames it gets: on a busy
  // machine rendering each token as it came made ten pages' tokens later, not sooner
  // (bench/browser.py, docs/benchmarks.md). Keeping up is two things: its renders take
  // under RENDER_SHARE of the time between them, and the last animation frame it asked
  // for came within FRAME_PROMPT_MS (a page starved of CPU, or a tab the browser paints
  // once a second, gets its frames late).
  const RENDER_SHARE = 0.2;
  const FRAME_PROMPT_MS = 25;

  class RenderScheduler {
    // scroller: the messages' scrolling box; scrollBottom: its "to the newest" button;
    // reveal: the MessageReveal, which holds the scroll position for a moment after the
    // page opened at a message.
    constructor({ scroller, scrollBottom, reveal }) {
      this.scroller = scroller;
      this.scrollBottom = scrollBottom;
      this.reveal = reveal;
      this.dirty = new Set();
      this.frameRequest = null; // {at, frame, timer} while a render is waited for
      this.followAskedAt = null; // when the frame that scrolls to the bottom was asked for
      this.frameLate = false; // whether the last animation frame asked for came late
      this.lastRender = { end: -Infinity, cost: 0 };
      // Whether the page follows the newest text; others set it too (a retry, a send, a
      // version stepped to, opening at a message).
      this.pinned = true;
      // Called by the browser (animation frames, timers): bound once, not per token.
      this.renderFrame = this.renderFrame.bind(this);
      this.followBottom = this.followBottom.bind(this);

      scroller.addEventListener(
        "scroll",
        () => {
          const fromBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
          this.pinned = fromBottom < 48;
          scrollBottom.hidden = this.pinned;
        },
        { passive: true },
      );
      scrollBottom.addEventListener("click", () => {
        this.pinned = true;
        scrollBottom.hidden = true;
        this.scrollToBottom();
      });
    }

    keepingUp() {
      return !this.frameLate && performance.now() - this.lastRender.end >= this.lastRender.cost / RENDER_SHARE;
    }

    scheduleRender(view) {
      this.dirty.add(view);
      if (this.frameRequest === null && this.keepingUp()) this.renderDirty();
      else this.frameWait();
    }

    // A view taken off the page (or ended) has nothing more to render.
    forget(view) {
      this.dirty.delete(view);
    }

    frameWait() {
      if (this.frameRequest === null) {
        this.frameRequest = { at: performance.now(), frame: requestAnimationFrame(this.renderFrame),
                              timer: setTimeout(this.renderFrame, FRAME_LATE_MS) };
      } else if (performance.now() - this.frameRequest.at >= FRAME_LATE_MS) {
        this.renderFrame(); // a hidden tab's timers are slowed too; socket frames are not
      }
    }

    renderFrame() {
      if (this.frameRequest !== null) {
        this.frameLate = performance.now() - this.frameRequest.at > FRAME_PROMPT_MS;
        cancelAnimationFrame(this.frameRequest.frame);
        clearTimeout(this.frameRequest.timer);
        this.frameRequest = null;
      }
      this.renderDirty();
    }

    // Renders every view with news, within one frame's budget; what is left waits for a frame.
    renderDirty() {
      const started = performance.now();
      const deadline = started + FRAME_BUDGET_MS;
      const views = [...this.dirty];
      this.dirty.clear();
      for (const view of views) if (view.render(deadline)) this.dirty.add(view);
      const end = performance.now();
      this.lastRender = { end, cost: end - started };
      if (this.dirty.size) this.frameWait();
      if (this.reveal.keep()) this.pinned = false;
      else if (this.pinned && this.followAskedAt === null) {
        // Scrolled in the frame, where the browser lays out anyway: reading the height now
        // would lay the page out once per token.
        this.followAskedAt = end;
        requestAnimationFrame(this.followBottom);
      }
    }

    scrollToBottom() {
      this.scroller.scrollTop = this.scroller.scrollHeight;
    }

    // The newest text shown in the next frame, if the page follows it.
    follow() {
      if (this.pinned) requestAnimationFrame(this.followBottom);
    }

    // Later in the frame: unless the page was opened at a message meanwhile.
    followBottom() {
      if (this.followAskedAt !== null) {
        this.frameLate = performance.now() - this.followAskedAt > FRAME_PROMPT_MS;
        this.followAskedAt = null;
      }
      if (this.pinned) this.scrollToBottom();
    }
  }

  window.RenderScheduler = RenderScheduler;
})();
