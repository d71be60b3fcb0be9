// Rendering an answer piece by piece, so that no frame costs more the longer it gets.
//
// A streamed answer grows token by token. Re-parsing the whole text every animation frame
// makes each frame cost more the longer the model talks (a 200,000-character line held
// the page for 0.2-0.3 s of CPU a frame, over four seconds in all), so the text is cut
// into pieces: each piece before the last cut is rendered once and kept, and only the
// short tail after it is parsed again each frame. The cuts (BoundaryScanner) are:
//
// - block: at the start of a line after a blank line, outside code (Markdown blocks cut
//   there cannot change meaning when more text arrives); at a list item too, once the
//   text since the last cut is long (the piece's list is then joined to the one before,
//   as a quote's is after an inline cut);
// - inline: inside a paragraph (heading, list item) longer than TAIL_MAX characters, at a
//   space, or at the start of its next line; the text after it is more of the same
//   paragraph, parsed as inline Markdown and shown as a block inside it (a line break);
// - code: inside a code block longer than CODE_TAIL_MAX; the text after it is raw code.
//
// Each frame renders pieces until its time budget is spent (at least one), so even a
// whole long answer arriving at once (a reload, a snapshot) is shown over a few frames.
// When the answer ends, an answer of up to FULL_RENDER_MAX characters is rendered once
// more in one piece, which repairs what a cut renders differently (a loose list shown as
// two lists, a reference-style link defined after its use, emphasis across an inline
// cut). A longer one keeps its pieces and only renders its tail as pieces too.
(function () {
  "use strict";

  const { blocks, inline, decorateCode } = YiMarkdown;

  // How the text after a cut is rendered.
  const BLOCK = "block";
  const JOIN = "join"; // blocks, the first going on with the list or quote before
  const INLINE = "inline";
  const CODE = "code";
  const SKIP = "skip"; // the closing fence of a code block cut in pieces: nothing to show

  const TAIL_MAX = 2000; // of Markdown parsed again every frame, at most (under 10 ms)
  const PART = 1000; // an inline cut leaves a piece of PART/2 to PART characters
  const CODE_TAIL_MAX = 20000; // code is cheap to parse but is highlighted only whole
  const CODE_PART = 10000;
  const LOOSE_LIST_LIMIT = 3000; // a list item after a blank line is a cut past this
  const FULL_RENDER_MAX = 10000; // about 50 ms of parsing at the worst (dense markup)
  const BUDGET_MS = 10;
  const LINE_START_KNOWN = 16; // characters of a line that tell a list item, a heading...

  const FENCE_OPEN = /^\s*(`{3,}|~{3,})(.*)$/;
  const FENCE_CLOSE = /^\s*(`{3,}|~{3,})\s*$/;
  const LIST_ITEM = /^([-*+]|\d{1,9}[.)])(\s|$)/;
  const QUOTE = /^ {0,3}>/;
  const QUOTE_MARKS = /^(?: {0,3}> ?)+/gm;
  const HEADING = /^ {0,3}#{1,6}(?:[ \t]|$)/;
  const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  const INDENTED = /^(?: {4}|\t)/;
  const HTML_START = /^ {0,3}</;
  const FENCE_START = /^ {0,3}(`{3,}|~{3,})/;
  const BULLET_ITEM = /^ {0,3}[-*+][ \t]+\S/;
  const FIRST_ORDERED_ITEM = /^ {0,3}1[.)][ \t]+\S/;

  function isTableDelimiter(line) {
    return line.includes("|") && line.includes("-") && /^[\s|:-]+$/.test(line);
  }

  // A line that ends the paragraph above it and starts a block (CommonMark's blocks that
  // may interrupt a paragraph, and a table's delimiter row). Any other line after
  // paragraph text goes on with that paragraph.
  function startsBlock(line) {
    return HEADING.test(line) || QUOTE.test(line) || FENCE_START.test(line) || RULE.test(line) ||
      BULLET_ITEM.test(line) || FIRST_ORDERED_ITEM.test(line) || HTML_START.test(line) || isTableDelimiter(line);
  }

  // Where to cut a long paragraph line: the last space in [from + PART/2, from + PART)
  // that leaves the piece with its code spans, emphasis, links and $ math closed (else the last
  // space, else anywhere that does not split a surrogate pair).
  function inlineCut(text, from, end) {
    const hi = Math.min(from + PART, end);
    let ticks = 0;
    let stars = 0;
    let brackets = 0;
    let dollars = 0;
    let balanced = -1;
    let space = -1;
    for (let i = from; i < hi; i++) {
      const c = text[i];
      if (c === "`") ticks++;
      else if (c === "*" || c === "_") stars++;
      else if (c === "$") dollars++;
      else if (c === "[" || c === "(") brackets++;
      else if (c === "]" || c === ")") brackets--;
      else if ((c === " " || c === "\t") && i >= from + PART / 2) {
        space = i + 1;
        if (ticks % 2 === 0 && stars % 2 === 0 && dollars % 2 === 0 && brackets <= 0) balanced = i + 1;
      }
    }
    if (balanced !== -1) return balanced;
    if (space !== -1) return space;
    return anywhereCut(text, hi);
  }

  // Math delimiters ($, \( and \[; two a formula): over MATH_HEAVY an answer not streamed
  // here is rendered in pieces, and a piece takes in no more blocks past PIECE_MATH.
  const MATH_HEAVY = 40;
  const PIECE_MATH = 16;
  const MATH_DELIMITER = /\$|\\[([]/g;

  function mathHeavy(text, limit = MATH_HEAVY) {
    let count = 0;
    MATH_DELIMITER.lastIndex = 0;
    while (MATH_DELIMITER.test(text)) if (++count > limit) return true;
    return false;
  }

  function anywhereCut(text, at) {
    const code = text.charCodeAt(at);
    return code >= 0xdc00 && code <= 0xdfff ? at - 1 : at;
  }

  // Finds the cuts by reading each line once: the state (inside a fence, a table, HTML,
  // was the previous line blank, paragraph text) carries over between calls, so the cost
  // per frame is the new text only.
  class BoundaryScanner {
    constructor() {
      this.pos = 0; // start of the first line not yet read whole
      this.fence = null;
      this.previousBlank = false;
      this.table = false;
      this.html = false;
      this.paragraph = false; // the last line read may be continued by the next
      this.previousStart = 0;
      this.previousHasPipe = false;
      this.paragraphQuoted = false;
      this.cuts = []; // {at, mode, quoted}, `at` increasing
      this.last = 0;
      this.lastMode = BLOCK;
      this.read = 0; // the cuts depend on the text up to here and no further
    }

    // `quoted`: an inline cut in a quote's paragraph, whose lines after it carry "> " marks.
    cut(at, mode, quoted = false) {
      if (at <= this.last) return;
      this.cuts.push({ at, mode, quoted });
      this.last = at;
      this.lastMode = mode;
      if (at > this.read) this.read = at;
    }

    // `final`: the text is whole; cut it to its end.
    scan(text, final) {
      let pos = this.pos;
      for (;;) {
        const end = text.indexOf("\n", pos);
        if (end === -1) break;
        this.line(text, pos, end, true);
        pos = end + 1;
      }
      this.pos = pos;
      if (pos > this.read) this.read = pos;
      if (final) {
        if (pos < text.length) this.line(text, pos, text.length, true);
        this.pos = text.length;
        this.cut(text.length, BLOCK);
        this.read = text.length;
        return;
      }
      if (pos === text.length) return;
      // The first character of the line being written is enough to settle what is
      // above it; waiting for its newline would hold a finished block back a line.
      // (Unless it may turn out to be a list item, HTML or indented.)
      if (!this.fence && this.previousBlank) {
        this.read = Math.max(this.read, pos + 1);
        if (!/[ \t\r\n*+\-0-9<]/.test(text[pos])) this.cut(pos, BLOCK);
      }
      this.line(text, pos, text.length, false);
    }

    // One line, text[start, end); `whole` when its newline has arrived. A line being
    // written is looked at only for cuts inside it; its state is read once it is whole.
    line(text, start, end, whole) {
      const line = text.slice(start, end);
      if (this.fence) {
        const close = whole && FENCE_CLOSE.exec(line);
        if (close && close[1][0] === this.fence[0] && close[1].length >= this.fence.length) {
          this.fence = null;
          if (this.lastMode === CODE) {
            this.cut(start, SKIP);
            this.cut(Math.min(end + 1, text.length), BLOCK);
          }
        } else if (start > this.last && end - this.last > CODE_TAIL_MAX) {
          this.cut(start, CODE);
        }
        while (end - this.last > CODE_TAIL_MAX) this.cut(anywhereCut(text, this.last + CODE_PART), CODE);
        this.previousBlank = false;
        this.paragraph = false;
        return;
      }
      const blank = line.trim() === "";
      // A line being written is judged by its start once that shows what the line is.
      if (!blank && (whole || end - start >= LINE_START_KNOWN)) {
        this.lineStart(line, start);
        if (end > this.read) this.read = end; // what was decided rests on the line so far
      }
      // Does this line go on with a paragraph in a quote?
      const continues = this.paragraph && !(this.last === start && this.lastMode !== INLINE);
      const quoted = continues ? this.paragraphQuoted : QUOTE.test(line);
      if (!blank && !this.table && !this.html && !INDENTED.test(line) && !HTML_START.test(line) && !FENCE_OPEN.test(line)) {
        // A paragraph line too long to parse again every frame.
        while (end - this.last > TAIL_MAX) {
          const from = Math.max(this.last, start);
          if (end - from <= PART) break;
          this.cut(inlineCut(text, from, end), INLINE, quoted);
        }
      }
      if (!whole) return;
      if (blank) {
        this.table = false;
        this.html = false;
      } else {
        if (HTML_START.test(line)) this.html = true;
        if (!this.previousBlank && start > 0 && isTableDelimiter(line)) this.table = true;
      }
      const open = FENCE_OPEN.exec(line);
      if (open && !(open[1][0] === "`" && open[2].includes("`"))) this.fence = open[1];
      this.paragraph = !blank && !this.fence && !this.table && !this.html && !HEADING.test(line) &&
        !RULE.test(line) && !INDENTED.test(line);
      this.paragraphQuoted = this.paragraph && quoted;
      this.previousBlank = blank;
      this.previousStart = start;
      this.previousHasPipe = line.includes("|");
    }

    // A cut where a line starts.
    lineStart(line, start) {
      const unindented = !/^[ \t]/.test(line);
      if (this.lastMode === INLINE && start > this.last) {
        // What follows an inline cut goes on with that paragraph: a line that does not
        // (a heading, a list item, a fence, anything after a blank line) starts a piece
        // of its own, and a table takes its header line along.
        if (isTableDelimiter(line) && this.previousHasPipe && this.previousStart > this.last) {
          this.cut(this.previousStart, BLOCK);
          return;
        }
        if (!this.paragraph || this.endsParagraph(line)) {
          // (A quote goes on only without a blank line between; a list, either way.)
          const join = (unindented && LIST_ITEM.test(line)) || (QUOTE.test(line) && !this.previousBlank);
          this.cut(start, join ? JOIN : BLOCK);
          return;
        }
      }
      if (this.previousBlank && unindented) {
        // A list item or HTML after a blank line may still belong to the block above
        // (a loose list, a <details> spanning blank lines): cut there only when long.
        if (!LIST_ITEM.test(line) && !HTML_START.test(line)) this.cut(start, BLOCK);
        else if (start - this.last > LOOSE_LIST_LIMIT) this.cut(start, LIST_ITEM.test(line) ? JOIN : BLOCK);
      } else if (unindented && !this.table && !this.html && LIST_ITEM.test(line) && !RULE.test(line)) {
        if (start - this.last > TAIL_MAX) this.cut(start, JOIN);
      } else if (this.paragraph && start - this.last > TAIL_MAX && !this.endsParagraph(line) && !line.includes("|")) {
        // A line of a long paragraph ("|": it may be a table's header).
        this.cut(start, INLINE, this.paragraphQuoted);
      }
    }

    // True when `line` ends the paragraph being read: it starts a block. A line of a
    // quote's paragraph is judged without its "> " marks (a mark alone ends it).
    endsParagraph(line) {
      if (!this.paragraphQuoted || !QUOTE.test(line)) return startsBlock(line);
      const inner = line.replace(QUOTE_MARKS, "");
      return !inner.trim() || startsBlock(inner);
    }
  }

  const CONTAINERS = new Set(["BLOCKQUOTE", "UL", "OL", "LI"]);
  const TEXT_BLOCKS = new Set(["P", "H1", "H2", "H3", "H4", "H5", "H6", "LI", "UL", "OL", "BLOCKQUOTE"]);
  const LEAVES = new Set(["P", "H1", "H2", "H3", "H4", "H5", "H6", "LI"]);

  // The element whose text the next piece goes on with: the last paragraph, heading or
  // list item, however deep in quotes and lists.
  function textLeaf(fragment) {
    let node = fragment.lastElementChild;
    while (node && CONTAINERS.has(node.tagName)) {
      const child = node.lastElementChild;
      if (!child || !TEXT_BLOCKS.has(child.tagName)) break;
      node = child;
    }
    return node && LEAVES.has(node.tagName) ? node : null;
  }

  // The <code> of the last code block, which raw code pieces go on with. marked ends a
  // block with a newline; one cut inside a line must not have it.
  function codeLeaf(fragment, cutInsideLine) {
    const pre = fragment.lastElementChild;
    const code = pre && pre.tagName === "PRE" ? pre.querySelector("code") : null;
    if (!code) return null;
    code.classList.add("nohighlight"); // the rest of it comes later, unhighlighted
    const last = code.lastChild;
    if (cutInsideLine && last && last.nodeType === Node.TEXT_NODE && last.data.endsWith("\n")) {
      last.data = last.data.slice(0, -1);
    }
    return code;
  }

  // A piece that starts with a list item or a quote carries on the list or quote the
  // piece before ended with.
  function joinContainer(settled, fragment) {
    const first = fragment.firstElementChild;
    const before = settled.lastElementChild;
    if (!first || !before || first.tagName !== before.tagName || !["UL", "OL", "BLOCKQUOTE"].includes(first.tagName)) {
      return;
    }
    if (first.previousSibling && first.previousSibling.textContent.trim()) return;
    before.append(...first.childNodes);
    first.remove();
  }

  function part() {
    const span = document.createElement("span");
    span.className = "md-part";
    return span;
  }

  // Renders one answer into container. set()/append() only record text; render() does
  // the work and is meant to run at most once per animation frame; it returns true while
  // pieces are left for the next frame. finish() renders the final text, also over
  // several frames if it is long (returns true then).
  class StreamingMarkdown {
    constructor(container) {
      this.container = container;
      this.text = "";
      this.reset();
    }

    reset() {
      this.scanner = new BoundaryScanner();
      this.rendered = 0; // cuts rendered
      this.start = 0; // where the text after the last rendered cut starts
      this.mode = BLOCK; // and how it is rendered
      this.quoted = false;
      this.leaf = null; // where INLINE and CODE pieces go
      this.final = false;
      this.pending = false;
      this.renderedTail = null;
      this.tailPart = null; // the tail inside this.leaf, for INLINE and CODE
      this.settled = document.createElement("div");
      this.settled.className = "md-settled";
      this.tail = document.createElement("div");
      this.tail.className = "md-tail";
      this.container.replaceChildren(this.settled, this.tail);
    }

    set(text) {
      // A snapshot from the start may differ from what was shown; start over then.
      // (Everything the scanner has read must be unchanged, not only what is rendered.)
      if (this.final || !this.tail.isConnected || !text.startsWith(this.text.slice(0, this.scanner.read))) {
        this.text = text;
        this.reset();
      } else {
        this.text = text;
      }
    }

    append(text) {
      this.text += text;
    }

    render(deadline = performance.now() + BUDGET_MS) {
      if (!this.tail.isConnected) {
        const final = this.final;
        this.reset();
        this.final = final;
      }
      this.scanner.scan(this.text, this.final);
      const cuts = this.scanner.cuts;
      if (this.rendered < cuts.length) {
        this.clearTail();
        do this.renderPiece();
        while (this.rendered < cuts.length && performance.now() < deadline);
      }
      this.pending = this.rendered < cuts.length;
      if (!this.pending && !this.final) this.renderTail();
      return this.pending;
    }

    renderPiece() {
      const cuts = this.scanner.cuts;
      const mode = this.mode;
      let cut = cuts[this.rendered];
      if (mode === BLOCK || mode === JOIN) {
        // Blocks that follow each other go through the parser in one call (a list cut in
        // two is one list again), up to TAIL_MAX characters.
        while (this.rendered + 1 < cuts.length && (cut.mode === BLOCK || cut.mode === JOIN) &&
               cuts[this.rendered + 1].at - this.start <= TAIL_MAX &&
               !mathHeavy(this.text.slice(this.start, cuts[this.rendered + 1].at), PIECE_MATH)) {
          this.rendered++;
          cut = cuts[this.rendered];
        }
      }
      const source = this.text.slice(this.start, cut.at);
      if (mode === BLOCK || mode === JOIN) {
        const fragment = blocks(source);
        if (cut.mode === CODE) this.leaf = codeLeaf(fragment, source[source.length - 1] !== "\n");
        else this.leaf = cut.mode === INLINE ? textLeaf(fragment) : null;
        decorateCode(fragment);
        if (mode === JOIN) joinContainer(this.settled, fragment);
        this.settled.append(fragment);
      } else if (mode === INLINE) {
        const span = part();
        span.append(inline(this.inlineSource(source).replace(/\n$/, "")));
        (this.leaf || this.settled).append(span);
        if (cut.mode !== INLINE) this.leaf = null;
      } else if (mode === CODE) {
        (this.leaf || this.settled).append(source);
        if (cut.mode !== CODE) this.leaf = null;
      }
      this.start = cut.at;
      this.mode = cut.mode;
      this.quoted = cut.quoted;
      this.rendered++;
    }

    renderTail() {
      const source = this.text.slice(this.start);
      if (source === this.renderedTail) return;
      this.renderedTail = source;
      if (this.mode === INLINE || this.mode === CODE) {
        if (!this.tailPart) {
          this.tailPart = this.mode === INLINE ? part() : document.createTextNode("");
          (this.leaf || this.settled).append(this.tailPart);
        }
        if (this.mode === INLINE) this.tailPart.replaceChildren(inline(this.inlineSource(source)));
        else this.tailPart.data = source;
      } else if (this.mode !== SKIP) {
        const fragment = blocks(source);
        decorateCode(fragment, { highlight: false });
        this.tail.replaceChildren(fragment);
      }
    }

    // More of a paragraph: in a quote, its lines without their "> " marks.
    inlineSource(source) {
      return this.quoted ? source.replace(QUOTE_MARKS, "") : source;
    }

    clearTail() {
      if (this.tailPart) this.tailPart.remove();
      this.tailPart = null;
      this.tail.replaceChildren();
      this.renderedTail = null;
    }

    // The answer ended: its final text. A short one is rendered once more in one piece,
    // every code block highlighted; a long one keeps what is rendered and renders the
    // rest in pieces, over several frames if needed (returns true while pieces are left).
    finish(text) {
      // An answer not streamed here (a reload, a conversation opened) with much math is
      // rendered in pieces over frames like a long one: none of its formulas is built
      // yet, and building dozens at once would hold the page (docs/benchmarks.md).
      const unseen = this.text === "" && this.rendered === 0;
      if (text.length <= FULL_RENDER_MAX && !(unseen && mathHeavy(text))) {
        this.text = text;
        const fragment = blocks(text);
        decorateCode(fragment);
        this.container.replaceChildren(fragment);
        this.final = true;
        this.pending = false;
        return false;
      }
      if (this.final || !this.tail.isConnected || !text.startsWith(this.text.slice(0, this.scanner.read))) {
        this.text = text;
        this.reset();
      }
      this.text = text;
      this.final = true;
      return this.render();
    }
  }

  Object.assign(window.YiMarkdown, { StreamingMarkdown, BoundaryScanner });
})();
