// Markdown rendering of assistant answers: safe (DOMPurify over marked), highlighted
// (highlight.js), and cheap to repeat while an answer streams.
//
// A streamed answer grows token by token. Re-parsing the whole text on every animation
// frame makes each frame cost more the longer the model talks, so the text is cut in
// two at the last blank line outside a fenced code block whose next line starts a new
// top-level block: everything before that cut is "settled" (Markdown blocks separated
// like this cannot change meaning when more text arrives), rendered once, highlighted
// once and kept; only the short unsettled tail is parsed again each frame. When the
// answer ends the whole text is rendered once more in one piece, which also repairs
// the few constructs a split renders slightly differently (a loose bullet list shown
// as two lists, a reference-style link defined after its use).
(function () {
  "use strict";

  function escapeHTML(text) {
    return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  marked.use({
    gfm: true,
    breaks: true,
    renderer: {
      // An image would load the moment it is shown, so a prompt-injected answer could
      // leak the conversation through an image URL. It becomes a link to open at will.
      image({ href, text }) {
        return `<a href="${escapeHTML(href)}">Image: ${escapeHTML(text || href)}</a>`;
      },
    },
  });

  // Model output is untrusted. Beyond scripts: no images or media (see above), no
  // forms or styles that could pass for the page's own controls, and no id, name or
  // data-* attributes that could collide with the page's (or a test's) selectors.
  const SANITIZE = {
    FORBID_TAGS: ["img", "picture", "video", "audio", "iframe", "style", "form", "input", "button", "textarea", "select"],
    FORBID_ATTR: ["id", "name", "style"],
    ALLOW_DATA_ATTR: false,
  };

  // Every link opens in a new tab without handing the page (window.opener) or the
  // conversation URL (Referer) to the site it points at.
  DOMPurify.addHook("afterSanitizeAttributes", function (node) {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });

  hljs.configure({ ignoreUnescapedHTML: true });

  function renderHTML(text) {
    try {
      return DOMPurify.sanitize(marked.parse(text), SANITIZE);
    } catch (err) {
      // marked does not throw on strings, but if it ever does the text still shows.
      return `<p>${escapeHTML(text)}</p>`;
    }
  }

  function fragmentFrom(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  // Highlights and adds a copy button to every code block in root that has neither.
  function decorateCode(root) {
    root.querySelectorAll("pre > code").forEach(function (code) {
      const pre = code.parentElement;
      if (pre.dataset.decorated) return;
      pre.dataset.decorated = "1";
      if (!code.classList.contains("hljs")) {
        const lang = /(?:^|\s)language-(\S+)/.exec(code.className);
        if (lang && !hljs.getLanguage(lang[1])) code.classList.add("nohighlight");
        try {
          hljs.highlightElement(code);
        } catch (err) {
          /* an unhighlighted block is still readable */
        }
      }
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy code");
      pre.prepend(button);
    });
  }

  // The Copy button of every code block under root (one listener for all of them).
  function handleCopyButtons(root) {
    root.addEventListener("click", (event) => {
      const button = event.target.closest(".copy-code");
      if (!button) return;
      const code = button.parentElement.querySelector("code");
      const text = code ? code.textContent : "";
      const done = (label) => {
        button.textContent = label;
        setTimeout(() => (button.textContent = "Copy"), 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          () => done("Copied"),
          () => done("Copy failed"),
        );
      } else {
        // Plain http on a LAN address has no clipboard API.
        const area = document.createElement("textarea");
        area.value = text;
        area.setAttribute("readonly", "");
        area.className = "visually-hidden";
        document.body.append(area);
        area.select();
        const ok = document.execCommand("copy");
        area.remove();
        done(ok ? "Copied" : "Copy failed");
      }
    });
  }

  const FENCE_OPEN = /^\s*(`{3,}|~{3,})(.*)$/;
  const FENCE_CLOSE = /^\s*(`{3,}|~{3,})\s*$/;
  // Lines that may continue the block above them across a blank line: a list item (the
  // list above may go on) and HTML (a <details> block spans blank lines).
  const MAY_CONTINUE = /^([-*+]|\d{1,9}[.)])(\s|$)|^</;

  // A list (or HTML) long enough to make the tail this long is split there anyway.
  const DEFERRED_TAIL_LIMIT = 3000;

  // Finds settled boundaries by reading each complete line once: the state (inside a
  // fence or not, was the previous line blank) carries over between calls, so the cost
  // per frame is the new text only.
  class BoundaryScanner {
    constructor() {
      this.pos = 0;
      this.fence = null;
      this.previousBlank = false;
      this.boundary = 0;
      this.deferredBoundary = 0;
    }

    scan(text) {
      let pos = this.pos;
      for (;;) {
        const end = text.indexOf("\n", pos);
        if (end === -1) break;
        this.line(text.slice(pos, end), pos);
        pos = end + 1;
      }
      this.pos = pos;
      if (text.length - this.boundary > DEFERRED_TAIL_LIMIT && this.deferredBoundary > this.boundary) {
        this.boundary = this.deferredBoundary;
      }
      // The first character of the line being written is enough to settle what is
      // above it; waiting for its newline would hold a finished block back a line.
      // (Unless it may turn out to be a list item or HTML: see MAY_CONTINUE.)
      if (!this.fence && this.previousBlank && pos < text.length && !/[ \t\r\n*+\-0-9<]/.test(text[pos])) {
        this.boundary = pos;
      }
      return this.boundary;
    }

    line(line, start) {
      if (this.fence) {
        const close = FENCE_CLOSE.exec(line);
        if (close && close[1][0] === this.fence[0] && close[1].length >= this.fence.length) this.fence = null;
        this.previousBlank = false;
        return;
      }
      const blank = line.trim() === "";
      // After a blank line, an unindented line starts a block nothing before it can
      // change (an indented one may belong to a list item or be indented code). A list
      // item or HTML is the exception (MAY_CONTINUE): split there, a loose list would
      // show as several tight ones until the final render, so a list stays in the tail
      // unless it grows long.
      if (!blank && this.previousBlank && !/^[ \t]/.test(line)) {
        if (MAY_CONTINUE.test(line)) this.deferredBoundary = start;
        else this.boundary = start;
      }
      const open = FENCE_OPEN.exec(line);
      if (open && !(open[1][0] === "`" && open[2].includes("`"))) this.fence = open[1];
      this.previousBlank = blank;
    }
  }

  // Renders one growing answer into container. set()/append() only record text;
  // render() does the work and is meant to run at most once per animation frame.
  class StreamingMarkdown {
    constructor(container) {
      this.container = container;
      this.text = "";
      this.reset();
    }

    reset() {
      this.scanner = new BoundaryScanner();
      this.settledLength = 0;
      this.renderedTail = null;
      this.settled = document.createElement("div");
      this.settled.className = "md-settled";
      this.tail = document.createElement("div");
      this.tail.className = "md-tail";
      this.container.replaceChildren(this.settled, this.tail);
    }

    set(text) {
      // A snapshot from the start may differ from what was shown; start over then.
      // (Everything the scanner has read must be unchanged, not only the settled part.)
      if (!text.startsWith(this.text.slice(0, this.scanner.pos)) || !this.tail.isConnected) {
        this.text = text;
        this.reset();
      } else {
        this.text = text;
      }
    }

    append(text) {
      this.text += text;
    }

    render() {
      if (!this.tail.isConnected) this.reset();
      const boundary = this.scanner.scan(this.text);
      if (boundary > this.settledLength) {
        const blocks = fragmentFrom(renderHTML(this.text.slice(this.settledLength, boundary)));
        decorateCode(blocks);
        this.settled.append(blocks);
        this.settledLength = boundary;
      }
      const tail = this.text.slice(this.settledLength);
      if (tail !== this.renderedTail) {
        this.tail.innerHTML = renderHTML(tail);
        this.renderedTail = tail;
      }
    }

    // The answer ended: one full render of the final text, every code block highlighted.
    finish(text) {
      this.text = text;
      renderFinal(this.container, text);
    }
  }

  function renderFinal(container, text) {
    container.innerHTML = renderHTML(text);
    decorateCode(container);
  }

  window.YiMarkdown = { renderHTML, renderFinal, decorateCode, handleCopyButtons, StreamingMarkdown, BoundaryScanner };
})();
