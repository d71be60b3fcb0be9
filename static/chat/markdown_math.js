// Math in answers: $…$, $$…$$, \(…\) and \[…\], typeset with KaTeX (static/vendor/katex).
//
// marked finds the math (the extensions below) and writes a placeholder holding the source
// as text: <span class="math-inline">, or class "math-display" for display math. After
// DOMPurify has checked the page's HTML, typeset() replaces each placeholder's text by
// KaTeX's rendering, itself built as DOM and checked by DOMPurify with a math allow-list;
// math that KaTeX refuses keeps showing its source. So math goes through the same
// pipeline in the settled part and in the streaming tail: an unfinished $$ block is not
// math yet (no closing $$) and shows as the text it is until it closes.
//
// When is a dollar sign math? The rule of marked-katex-extension (what marked users run)
// and of VS Code's Markdown math: an opening $ not preceded by a letter or digit, a closing
// $ not followed by one; and pandoc's rule that the opening $ has no space after it and the
// closing $ none before. So "$5 and $10" and "US$5" are prices, "$x$, $y$" is math. Like
// Open WebUI, a CJK character counts as a space around math ("设$x$为实数").
(function () {
  "use strict";

  const INLINE_MAX = 1000; // characters of $…$ or \(…\) math looked at for its end
  const DISPLAY_MAX = 4000; // and of display math: a paragraph of stray openers costs at most n times this
  const CACHE_MAX = 500;

  // KaTeX runs no command that makes a link, a class, an id, a style or an image
  // (trust: false); macros cannot expand without end, and sizes are bounded (in em).
  const KATEX = {
    throwOnError: true, // an error shows the source (its own error box sets an inline style)
    trust: false,
    strict: "ignore",
    maxExpand: 1000,
    maxSize: 20,
    output: "htmlAndMathml",
  };

  const CJK = /[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3200-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]/;
  const WORD = /[\p{L}\p{N}]/u;

  // A character that may stand right before an opening $ or right after a closing one.
  function mayTouchDollar(c) {
    return !c || c === "\n" || !(WORD.test(c) || c === "\\" || c === "$") || CJK.test(c);
  }

  // The end of $…$ math starting at src[0] (after `open` dollars), or -1.
  function dollarEnd(src, open) {
    const limit = Math.min(src.length, open + (open === 2 ? DISPLAY_MAX : INLINE_MAX));
    if (open === 1 && /\s/.test(src[1] || " ")) return -1;
    for (let i = open; i < limit; i++) {
      const c = src[i];
      if (c === "\\") i++;
      else if (c === "\n" && (open === 1 || src[i + 1] === "\n")) return -1;
      else if (c === "$") {
        if (open === 2) {
          if (src[i + 1] !== "$") return -1; // a lone $ inside $$…$$: not this rule's
          return src.slice(open, i).trim() ? i + 2 : -1;
        }
        if (i === open) return -1;
        if (!/\s/.test(src[i - 1]) && mayTouchDollar(src[i + 1]) && !/\d/.test(src[i + 1] || "")) return i + 1;
      }
    }
    return -1;
  }

  // The end of \(…\) or \[…\] starting at src[0], or -1. No blank line inside.
  function bracketEnd(src) {
    const close = src[1] === "(" ? ")" : "]";
    const limit = Math.min(src.length, close === ")" ? INLINE_MAX : DISPLAY_MAX);
    for (let i = 2; i < limit; i++) {
      const c = src[i];
      if (c === "\\") {
        if (src[i + 1] === close) return src.slice(2, i).trim() ? i + 2 : -1;
        i++;
      } else if (c === "\n" && src[i + 1] === "\n") {
        return -1;
      }
    }
    return -1;
  }

  // Math at the start of src: {raw, display} or null. `before`: the character before it.
  function mathAt(src, before) {
    let end = -1;
    let display = false;
    if (src[0] === "$") {
      if (!mayTouchDollar(before)) return null;
      const open = src[1] === "$" ? 2 : 1;
      end = dollarEnd(src, open);
      display = open === 2;
    } else if (src[0] === "\\" && (src[1] === "(" || src[1] === "[")) {
      end = bracketEnd(src);
      display = src[1] === "[";
    }
    return end === -1 ? null : { raw: src.slice(0, end), display };
  }

  // Where inline math may start in src: marked stops its text there to try the tokenizer.
  function inlineStart(src) {
    const found = /(^|[^\\])(\$|\\[([])/g;
    for (let m = found.exec(src); m; m = found.exec(src)) {
      const at = m.index + m[1].length;
      if (m[2] !== "$" || mayTouchDollar(src[at - 1])) return at;
      found.lastIndex = at + 1;
    }
    return undefined;
  }

  const DISPLAY_LINE = /^ {0,3}(\$\$|\\\[)/;

  function escapeHTML(text) {
    return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  const extension = {
    extensions: [
      {
        // $$…$$ or \[…\] as a block of its own. (Right after a paragraph's line, it is
        // display math inside that paragraph: a block start that would interrupt the
        // paragraph has to look for its end at every line, which a page of stray $$ lines
        // would make quadratic.)
        name: "mathBlock",
        level: "block",
        tokenizer(src) {
          const lead = DISPLAY_LINE.exec(src);
          if (!lead) return undefined;
          const indent = lead[0].length - lead[1].length;
          const math = mathAt(src.slice(indent), "");
          if (!math || !math.display) return undefined;
          const rest = /^[ \t]*(?:\n|$)/.exec(src.slice(indent + math.raw.length));
          if (!rest) return undefined; // text after it on the line: inline math in a paragraph
          return { type: "mathBlock", raw: src.slice(0, indent + math.raw.length + rest[0].length), math: math.raw };
        },
        renderer(token) {
          return `<div class="math-display">${escapeHTML(token.math)}</div>\n`;
        },
      },
      {
        name: "mathInline",
        level: "inline",
        start: inlineStart,
        tokenizer(src, tokens) {
          const last = tokens.length ? tokens[tokens.length - 1].raw : "";
          const math = mathAt(src, last[last.length - 1]);
          if (!math) return undefined;
          return { type: "mathInline", raw: math.raw, display: math.display };
        },
        renderer(token) {
          return `<span class="${token.display ? "math-display" : "math-inline"}">${escapeHTML(token.raw)}</span>`;
        },
      },
    ],
  };

  // The TeX inside a placeholder's source, and whether it is display math.
  function texOf(raw) {
    const source = raw.trim();
    if (source.startsWith("$$")) return source.slice(2, -2);
    if (source.startsWith("$")) return source.slice(1, -1);
    return source.slice(2, -2);
  }

  // What KaTeX writes: HTML spans laid out with inline styles, MathML for screen readers,
  // and SVG paths for stretchy symbols. No link, image, script, event handler, id or URL.
  const MATH_TAGS = [
    "span", "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msup",
    "msub", "msubsup", "mover", "munder", "munderover", "mfrac", "msqrt", "mroot", "mtable", "mtr", "mtd",
    "mlabeledtr", "mpadded", "mphantom", "mstyle", "menclose", "svg", "path", "line",
  ];
  const MATH_ATTR = [
    "class", "aria-hidden", "xmlns", "encoding", "display", "mathvariant", "stretchy", "fence", "separator",
    "lspace", "rspace", "width", "height", "depth", "voffset", "minsize", "maxsize", "symmetric", "largeop",
    "movablelimits", "accent", "accentunder", "linethickness", "notation", "mathcolor", "mathbackground",
    "displaystyle", "scriptlevel", "columnalign", "rowalign", "rowspacing", "columnspacing", "columnlines",
    "rowlines", "frame", "framespacing", "side", "viewbox", "preserveaspectratio", "d", "x1", "y1", "x2", "y2",
    "stroke-width",
  ];
  const MATH_SANITIZE = {
    ALLOWED_TAGS: MATH_TAGS,
    ALLOWED_ATTR: MATH_ATTR,
    ADD_URI_SAFE_ATTR: MATH_ATTR, // none holds a URL: no value may look like one
    ALLOWED_URI_REGEXP: /^(?!)/,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    IN_PLACE: true,
  };
  // The CSS properties KaTeX lays math out with, and values with no function but rgb()
  // (so no url(), var(), image-set()).
  const MATH_STYLE = new Set([
    "height", "width", "min-width", "max-width", "vertical-align", "top", "bottom", "left", "right",
    "margin-left", "margin-right", "margin-top", "margin-bottom", "padding-left", "padding-right",
    "border-bottom-width", "border-top-width", "border-right-width", "border-left-width", "border-width",
    "border-style", "border-color", "border-top-style", "border-bottom-style", "border-right-style",
    "border-left-style", "border-top-color", "border-bottom-color", "border-left-color", "border-right-color",
    "color", "background-color", "position", "font-size",
  ]);
  const STYLE_VALUE = /^(?:[-\w.#%\s,]|rgba?\([\d.,\s%]*\))*$/;

  // KaTeX's virtual tree puts a style *attribute* on three rare MathML nodes (\pmb, an
  // \fcolorbox's border); setting one is an inline style the page's policy refuses (and
  // reports). The MathML is read by screen readers only, so those styles are dropped.
  function dropStyleAttributes(node) {
    if (node.attributes && typeof node.attributes === "object" && "style" in node.attributes) {
      delete node.attributes.style;
    }
    for (const child of node.children || []) dropStyleAttributes(child);
  }

  // KaTeX's DOM for tex, checked: its styles were set through CSSOM (which the policy
  // allows) and are held aside while DOMPurify checks the tree (which sets the attributes
  // it keeps again, and a style attribute set so would be refused), then put back, only
  // KaTeX's layout properties. null when KaTeX refuses the source.
  let sanitizingMath = false;

  function build(tex, display) {
    let root;
    try {
      const tree = katex.__renderToDomTree(tex, { ...KATEX, displayMode: display });
      dropStyleAttributes(tree);
      root = tree.toNode();
    } catch (err) {
      return null;
    }
    const styles = [];
    for (const el of [root, ...root.querySelectorAll("[style]")]) {
      if (!el.hasAttribute("style")) continue;
      const kept = [];
      for (let i = 0; i < el.style.length; i++) {
        const name = el.style[i];
        const value = el.style.getPropertyValue(name);
        if (MATH_STYLE.has(name) && STYLE_VALUE.test(value)) kept.push([name, value]);
      }
      styles.push([el, kept]);
      el.removeAttribute("style");
    }
    sanitizingMath = true;
    try {
      DOMPurify.sanitize(root, MATH_SANITIZE);
    } catch (err) {
      return null;
    } finally {
      sanitizingMath = false;
    }
    for (const [el, kept] of styles) {
      if (el !== root && !root.contains(el)) continue;
      for (const [name, value] of kept) el.style.setProperty(name, value);
    }
    return root;
  }

  // Rendered math by source: the streaming tail renders the same math again every frame.
  const cache = new Map();

  function rendered(tex, display) {
    const key = (display ? "D" : "I") + tex;
    let node = cache.get(key);
    if (node === undefined) {
      node = build(tex, display);
      cache.set(key, node);
      if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
    }
    return node && node.cloneNode(true);
  }

  // Replaces the source in every math placeholder under root by its rendering.
  function typeset(root) {
    root.querySelectorAll(".math-inline, .math-display").forEach((holder) => {
      const raw = holder.textContent;
      const node = rendered(texOf(raw), holder.classList.contains("math-display"));
      if (node) holder.replaceChildren(node);
      else holder.classList.add("math-error");
    });
  }

  window.YiMath = {
    extension,
    typeset,
    mathAt,
    isSanitizingMath: () => sanitizingMath,
    placeholderClass: (node, value) => (node.nodeName === "SPAN" || node.nodeName === "DIV") &&
      (value === "math-inline" || value === "math-display"),
  };
})();
