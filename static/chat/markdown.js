// Markdown of assistant answers turned into safe DOM: marked parses, DOMPurify keeps only
// an allow-list, highlight.js colours code, KaTeX typesets math (markdown_math.js). How a
// streaming answer is rendered piece by piece is in markdown_stream.js.
//
// Model output is untrusted: a prompt injection can make the model write anything. What
// it writes must not run script (DOMPurify, and the page's Content-Security-Policy
// behind it), must not make the browser fetch anything by being shown (a URL with the
// conversation in it is an exfiltration channel: images, SVG <image>/<feImage>/<use>,
// a table's background attribute, CSS url(), <link>, <object>, media posters, <a ping>,
// meta refresh, <base>, forms), and must not look like the page's own controls or notices
// (no class, id, style or role of its choosing). So the sanitiser allows a short list of
// text elements with a short list of attributes, and nothing else: no SVG, no MathML, no
// media, no forms. (Math is KaTeX's own SVG and MathML, built from the TeX source and
// checked against a list of its own: markdown_math.js.)
(function () {
  "use strict";

  // The page's strings come from Django's JavaScript catalog (/i18n/jsi18n/); the tests
  // that render Markdown on a blank page have none, and get the English.
  const gettext = window.gettext || ((text) => text);
  const interpolate = window.interpolate || ((text, names) => text.replace(/%\((\w+)\)s/g, (_, name) => names[name]));

  function escapeHTML(text) {
    return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  // Everything marked produces for Markdown, and the few text elements a model writes as
  // HTML. Not here, so removed (their text kept): svg, math, img, picture, video, audio,
  // source, track, iframe, object, embed, link, meta, base, style, form and its controls.
  const ALLOWED_TAGS = [
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q",
    "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "u", "ul", "var",
  ];
  // `class` only as marked writes it, a fenced block's language on <code> (the hook below);
  // no id, name, style, role, aria-*, data-*, event handlers, src, srcset, background, ping.
  const ALLOWED_ATTR = ["href", "title", "class", "start", "align", "colspan", "rowspan", "open"];

  // Raw HTML the model writes (marked's html tokens) is cut down to the allowed tags and
  // attributes before any parser sees it; everything else shows as the text it is. So the
  // browser never parses a <style>, an SVG or a style="" from model output at all: parsing
  // one, even in DOMPurify's inert document, makes the page's policy report a violation.
  // DOMPurify then checks the result like the rest. Attribute values and tags are bounded
  // so that no input makes the expressions backtrack for long.
  const ALLOWED_TAG_SET = new Set(ALLOWED_TAGS);
  const ALLOWED_ATTR_SET = new Set(ALLOWED_ATTR);
  const RAW_TAG =
    /<(\/?)([A-Za-z][A-Za-z0-9-]{0,30})((?:\s+[^\s"'<>\/=]{1,60}(?:\s*=\s*(?:"[^"<]{0,2000}"|'[^'<]{0,2000}'|[^\s"'=<>`]{1,2000}))?){0,30})\s*\/?>/g;
  const RAW_ATTRIBUTE = /([^\s"'<>\/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;

  function asText(html) {
    return html.replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function allowedHTML(raw) {
    const html = raw.replace(/<!--[\s\S]*?-->/g, ""); // comments say nothing to the reader
    let out = "";
    let last = 0;
    for (const tag of html.matchAll(RAW_TAG)) {
      out += asText(html.slice(last, tag.index));
      last = tag.index + tag[0].length;
      const name = tag[2].toLowerCase();
      if (!ALLOWED_TAG_SET.has(name)) {
        out += asText(tag[0]);
      } else if (tag[1]) {
        out += `</${name}>`;
      } else {
        let attributes = "";
        for (const attribute of tag[3].matchAll(RAW_ATTRIBUTE)) {
          const attributeName = attribute[1].toLowerCase();
          if (!ALLOWED_ATTR_SET.has(attributeName)) continue;
          // A class only where Markdown writes one (a code block's language): none of the
          // renderer's own (a math placeholder, a table's frame) from raw HTML.
          if (attributeName === "class" && name !== "code") continue;
          const value = attribute[2] ?? attribute[3] ?? attribute[4] ?? "";
          attributes += ` ${attributeName}="${value.replace(/"/g, "&quot;")}"`;
        }
        out += `<${name}${attributes}>`;
      }
    }
    return out + asText(html.slice(last));
  }

  marked.use(YiMath.extension);
  marked.use({
    gfm: true,
    breaks: true,
    renderer: {
      html({ text }) {
        return allowedHTML(text);
      },
      // An image would load the moment it is shown, so a prompt-injected answer could
      // leak the conversation through an image URL. It becomes a link to open at will.
      image({ href, text }) {
        return `<a href="${escapeHTML(href)}">${escapeHTML(interpolate(gettext("Image: %(name)s"), { name: text || href }, true))}</a>`;
      },
      // A task list's box as a character, not an <input> (no form controls in answers).
      checkbox({ checked }) {
        return checked ? "☑ " : "☐ ";
      },
    },
  });

  const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
  const CODE_LANGUAGE = /^language-[\w+#.-]{1,40}$/;

  const SANITIZE = {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    // Links: absolute http(s) and mailto only; no relative URL (a link into this app),
    // no javascript:, data:, file:, tel: or any other scheme.
    ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i,
    // Attributes that hold no URL, so the URL rule above must not judge them.
    ADD_URI_SAFE_ATTR: ["align", "start", "colspan", "rowspan", "open"],
    // A fragment, not a string: the sanitised tree goes into the page as it is, with no
    // second parse of serialised HTML that could mutate into something else (mXSS).
    RETURN_DOM_FRAGMENT: true,
  };

  DOMPurify.addHook("uponSanitizeAttribute", function (node, data) {
    if (data.attrName !== "class" || YiMath.isSanitizingMath()) return;
    if (YiMath.placeholderClass(node, data.attrValue)) return;
    const kept = node.nodeName === "CODE" ? data.attrValue.split(/\s+/).filter((c) => CODE_LANGUAGE.test(c)) : [];
    if (kept.length) data.attrValue = kept.join(" ");
    else data.keepAttr = false;
  });

  // Every link opens in a new tab without handing the page (window.opener) or the
  // conversation URL (Referer) to the site it points at.
  DOMPurify.addHook("afterSanitizeAttributes", function (node) {
    if (node.nodeName !== "A" || YiMath.isSanitizingMath()) return;
    if (node.hasAttribute("href")) {
      let url = null;
      try {
        url = new URL(node.getAttribute("href"));
      } catch (err) {
        /* not an absolute URL */
      }
      if (!url || !LINK_PROTOCOLS.has(url.protocol)) node.removeAttribute("href");
    }
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
    node.setAttribute("referrerpolicy", "no-referrer");
  });

  function sanitized(html, text) {
    let fragment;
    try {
      fragment = DOMPurify.sanitize(html, SANITIZE);
    } catch (err) {
      // Neither library throws on a string, but if one ever does the text still shows.
      fragment = document.createDocumentFragment();
      fragment.append(text);
      return fragment;
    }
    // DOMPurify's fragment belongs to its inert document. Into the page's now (it goes there
    // anyway): moving KaTeX's styled nodes into the inert document and back is slow
    // (docs/benchmarks.md, bench/math_render.py).
    document.adoptNode(fragment);
    YiMath.typeset(fragment);
    frameTables(fragment);
    return fragment;
  }

  // A table wider than the answer scrolls inside its own frame (words are not broken to
  // make it fit: chat.css); the frame takes keyboard focus so that it scrolls by keys too.
  function frameTables(root) {
    root.querySelectorAll("table").forEach((table) => {
      const frame = document.createElement("div");
      frame.className = "table-frame";
      frame.tabIndex = 0;
      table.replaceWith(frame);
      frame.append(table);
    });
  }

  // Markdown blocks (paragraphs, lists, code...) as a DocumentFragment.
  function blocks(text) {
    let html;
    try {
      html = marked.parse(text);
    } catch (err) {
      html = `<p>${escapeHTML(text)}</p>`;
    }
    return sanitized(html, text);
  }

  // Markdown inline content (emphasis, code spans, links) as a DocumentFragment.
  function inline(text) {
    let html;
    try {
      html = marked.parseInline(text);
    } catch (err) {
      html = escapeHTML(text);
    }
    return sanitized(html, text);
  }

  hljs.configure({ ignoreUnescapedHTML: true });

  // Highlighting costs about 1 ms per 1,000 characters in a named language and 15 ms with
  // the language guessed: past these sizes a block is shown plain so as not to hold the page.
  const HIGHLIGHT_MAX = 50000;
  const GUESSED_HIGHLIGHT_MAX = 5000;

  // Gives every code block in root its bar (the language, a Copy button, always shown:
  // touch screens have no hover) and, unless `highlight` is false (the streaming tail,
  // parsed again every frame), highlights it. The bar is there from the block's first
  // frame, so the block does not grow when it settles.
  function decorateCode(root, { highlight = true } = {}) {
    root.querySelectorAll("pre > code").forEach(function (code) {
      const pre = code.parentElement;
      if (pre.dataset.decorated) return;
      const lang = /(?:^|\s)language-(\S+)/.exec(code.className);
      if (highlight) {
        pre.dataset.decorated = "1";
        if (!code.classList.contains("hljs")) highlightCode(code, lang);
      }
      if (pre.firstElementChild && pre.firstElementChild.classList.contains("code-bar")) return;
      // The language is shown by the style sheet (attr()), so that it is not part of
      // the block's text when it is selected or read as text.
      const bar = document.createElement("div");
      bar.className = "code-bar";
      if (lang) bar.dataset.language = lang[1];
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = gettext("Copy");
      button.setAttribute("aria-label", lang ? interpolate(gettext("Copy %(language)s code"), { language: lang[1] }, true) : gettext("Copy code"));
      bar.append(button);
      pre.prepend(bar);
    });
  }

  function highlightCode(code, lang) {
    const known = lang && hljs.getLanguage(lang[1]);
    const size = code.textContent.length;
    if ((lang && !known) || size > (known ? HIGHLIGHT_MAX : GUESSED_HIGHLIGHT_MAX)) {
      code.classList.add("nohighlight");
      return;
    }
    try {
      hljs.highlightElement(code);
    } catch (err) {
      /* an unhighlighted block is still readable */
    }
  }

  // Says "Copied" (or why not) on the button for a moment and to screen readers through
  // one polite live region.
  let copyStatus = null;

  function copied(button, label) {
    if (!copyStatus) {
      copyStatus = document.createElement("div");
      copyStatus.className = "visually-hidden";
      copyStatus.setAttribute("role", "status");
      document.body.append(copyStatus);
    }
    copyStatus.textContent = label;
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = label;
    button.classList.add("is-copied");
    clearTimeout(button.copiedTimer);
    button.copiedTimer = setTimeout(() => {
      button.textContent = button.dataset.label;
      button.classList.remove("is-copied");
      copyStatus.textContent = "";
    }, 1500);
  }

  // Puts text on the clipboard and says so on `button`.
  function copyText(text, button) {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        () => copied(button, gettext("Copied")),
        () => copied(button, gettext("Copy failed")),
      );
      return;
    }
    // Plain http on a LAN address has no clipboard API.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (err) {
      /* refused: said below */
    }
    area.remove();
    button.focus();
    copied(button, ok ? gettext("Copied") : gettext("Copy failed"));
  }

  // The Copy button of every code block under root (one listener for all of them).
  function handleCopyButtons(root) {
    root.addEventListener("click", (event) => {
      const button = event.target.closest(".copy-code");
      if (!button) return;
      const code = button.closest("pre").querySelector("code");
      copyText(code ? code.textContent : "", button);
    });
  }

  window.YiMarkdown = { blocks, inline, decorateCode, handleCopyButtons, copyText };
})();
