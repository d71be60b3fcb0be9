// The composer's attachment tray: images chosen with the attach button, dropped anywhere
// on the page or pasted into the box. Each file becomes a chip at once and starts
// uploading at once (POST /attachments/, one file per request, so each has its own
// progress bar and its own refusal); Send then only names the uploaded ids. A chip sent
// stays, locked, until the server has stored its message (pending_sends.js), so a refused
// send loses no picture.
(function () {
  "use strict";

  // The server's own format of sizes (chat/images.py `_bytes`), so that a refusal made
  // here reads like one made there.
  function sizeText(bytes) {
    return bytes >= 1000000 ? `${(bytes / 1000000).toFixed(1)} MB` : `${Math.round(bytes / 1000)} KB`;
  }

  function element(tag, className, attributes) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  function hasFiles(event) {
    return Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types || []).includes("Files");
  }

  // One file of the tray. state: uploading, ready (the server stored it: `attachment`),
  // refused (`reason`); `locked` while a send that carries it waits for the server.
  class Chip {
    constructor(file, tray) {
      this.file = file;
      this.tray = tray;
      this.name = file.name || gettext("pasted image");
      this.state = "uploading";
      this.locked = false;
      this.attachment = null;
      this.request = null;
      this.previewUrl = null;
      this.build();
    }

    build() {
      this.el = element("li", "attachment-chip");
      const preview = element("span", "attachment-preview");
      // The file's own pixels at once; some (HEIC) the browser cannot show, until the
      // server's thumbnail replaces them.
      this.image = element("img", "attachment-image", { alt: this.name, title: this.name, decoding: "async" });
      this.image.addEventListener("error", () => preview.classList.add("is-blank"));
      const kind = element("span", "attachment-kind", { "aria-hidden": "true" });
      const extension = /\.(\w{1,5})$/.exec(this.name);
      kind.textContent = extension ? extension[1].toUpperCase() : "IMAGE";
      preview.append(this.image, kind);
      this.progress = element("progress", "attachment-progress", {
        max: "1", "aria-label": interpolate(gettext("Uploading %(name)s"), this, true),
      });
      this.progress.value = 0;
      preview.append(this.progress);
      this.reason = element("p", "attachment-reason", { role: "alert" });
      this.reason.hidden = true;
      this.remove = element("button", "attachment-remove", {
        type: "button", "aria-label": interpolate(gettext("Remove %(name)s"), this, true),
      });
      this.remove.textContent = "×";
      this.remove.addEventListener("click", () => this.tray.discard([this], true));
      this.el.append(preview, this.reason, this.remove);
      this.show();
    }

    show() {
      this.el.dataset.state = this.locked ? "sending" : this.state;
      this.progress.hidden = this.state !== "uploading";
      this.remove.disabled = this.locked;
    }

    upload(url, csrfToken) {
      this.previewUrl = URL.createObjectURL(this.file);
      this.image.src = this.previewUrl;
      // XMLHttpRequest, not fetch: fetch reports no upload progress. The file is the body
      // itself (no multipart form to parse on the server); its name rides in a header.
      const request = new XMLHttpRequest();
      this.request = request;
      request.open("POST", url);
      request.setRequestHeader("X-CSRFToken", csrfToken);
      request.setRequestHeader("Content-Type", "application/octet-stream");
      request.setRequestHeader("X-File-Name", encodeURIComponent(this.name));
      request.setRequestHeader("Accept", "application/json");
      request.responseType = "json";
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) this.progress.value = event.loaded / event.total;
      });
      request.addEventListener("load", () => this.uploaded(request));
      request.addEventListener("error", () =>
        this.refuse(gettext("The upload failed: the server could not be reached. Remove it and attach it again.")),
      );
      request.send(this.file);
    }

    uploaded(request) {
      this.request = null;
      const body = request.response;
      if (request.status === 201 && body && typeof body.id === "number") {
        this.attachment = body;
        this.state = "ready";
        // The server's thumbnail is what was stored (upright, as it will be sent).
        this.image.addEventListener("load", () => this.forgetPreview(), { once: true });
        this.image.parentElement.classList.remove("is-blank");
        this.image.src = body.thumbnail_url;
        this.show();
        this.tray.changed();
      } else if (body && typeof body.message === "string") {
        this.refuse(body.message);
      } else if (request.responseURL && new URL(request.responseURL).pathname === this.tray.loginPath) {
        this.refuse(gettext("You were signed out, so this image was not uploaded. Sign in again and attach it."));
      } else if (request.status === 403) {
        this.refuse(
          gettext("The server refused the upload (the page's security token is out of date). Reload the page and attach it again."),
        );
      } else {
        this.refuse(interpolate(gettext("The upload failed (HTTP %(status)s). Remove it and attach it again."), request, true));
      }
    }

    refuse(sentence) {
      this.request = null;
      this.state = "refused";
      this.reason.textContent = `${this.name}: ${sentence}`;
      this.reason.hidden = false;
      this.forgetPreview();
      this.image.parentElement.classList.add("is-blank");
      this.show();
      this.tray.changed();
    }

    forgetPreview() {
      if (!this.previewUrl) return;
      // An image still loading from a revoked URL fails loudly (ERR_FILE_NOT_FOUND).
      if (this.image.getAttribute("src") === this.previewUrl) this.image.removeAttribute("src");
      URL.revokeObjectURL(this.previewUrl);
      this.previewUrl = null;
    }

    dispose() {
      if (this.request) this.request.abort();
      this.request = null;
      this.forgetPreview();
      this.el.remove();
    }
  }

  class AttachmentTray {
    // list: the <ul> of chips; input: the hidden file <input>; button: the attach button;
    // overlay: shown while files are dragged over the page; composerInput: the textarea,
    // whose image pastes become chips; limits: {per_message, max_bytes}; onChange().
    constructor({ list, input, button, overlay, composerInput, uploadUrl, csrfToken, loginPath, limits, onChange }) {
      this.list = list;
      this.uploadUrl = uploadUrl;
      this.csrfToken = csrfToken;
      this.loginPath = loginPath;
      this.perMessage = (limits && limits.per_message) || Infinity;
      this.maxBytes = (limits && limits.max_bytes) || Infinity;
      this.onChange = onChange;
      this.composerInput = composerInput;
      this.chips = [];

      button.addEventListener("click", () => input.click());
      input.addEventListener("change", () => {
        this.add(input.files);
        input.value = ""; // the same file chosen again is a change again
      });
      this.watchDrops(overlay);
      // A picture pasted anywhere on the page is attached, as one dropped is; pasted into
      // another field (search, a rename, the settings) it is that field's own business.
      document.addEventListener("paste", (event) => {
        if (event.target === composerInput || !Composer.typingIn(event.target)) this.pasted(event);
      });
    }

    watchDrops(overlay) {
      // Entering a child leaves its parent: count, so the overlay stays while over the page.
      let depth = 0;
      const hide = () => {
        depth = 0;
        overlay.hidden = true;
      };
      document.addEventListener("dragenter", (event) => {
        if (!hasFiles(event)) return;
        event.preventDefault();
        depth += 1;
        overlay.hidden = false;
      });
      document.addEventListener("dragover", (event) => {
        if (!hasFiles(event)) return;
        // Without this the browser would open the dropped file in place of the chat.
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
      });
      document.addEventListener("dragleave", (event) => {
        if (!hasFiles(event)) return;
        depth = Math.max(0, depth - 1);
        if (depth === 0) overlay.hidden = true;
      });
      document.addEventListener("drop", (event) => {
        if (!hasFiles(event)) return;
        event.preventDefault();
        hide();
        this.add(event.dataTransfer.files);
      });
      window.addEventListener("blur", hide);
    }

    // A copied picture arrives as a file. Copied cells or rich text (Excel, Word, a web
    // page) often carry a picture of themselves beside their text: then the text is
    // what was meant, and it pastes as usual.
    pasted(event) {
      const data = event.clipboardData;
      if (!data || !data.files || !data.files.length) return;
      if (Array.from(data.types || []).includes("text/plain")) return;
      event.preventDefault();
      this.add(data.files);
    }

    add(files) {
      for (const file of Array.from(files || [])) {
        const chip = new Chip(file, this);
        this.chips.push(chip);
        this.list.append(chip.el);
        const refusal = this.refusal(chip);
        if (refusal) chip.refuse(refusal);
        else chip.upload(this.uploadUrl, this.csrfToken);
      }
      this.list.hidden = this.chips.length === 0;
      this.changed();
    }

    // Refused here, before any byte is sent: over the server's limits, said as it would.
    refusal(chip) {
      if (chip.file.size > this.maxBytes) {
        return interpolate(
          gettext("That image is too large (%(size)s; the limit is %(limit)s). Attach a smaller one."),
          { size: sizeText(chip.file.size), limit: sizeText(this.maxBytes) },
          true,
        );
      }
      const counted = this.chips.filter((c) => c !== chip && !c.locked && c.state !== "refused").length;
      if (counted >= this.perMessage) {
        return interpolate(
          gettext("A message can carry at most %(count)s images. Send these first, or remove one to attach this one."),
          { count: this.perMessage },
          true,
        );
      }
      return null;
    }

    // Chips the next send carries, and those it would wait for.
    ready() {
      return this.chips.filter((c) => !c.locked && c.state === "ready");
    }

    uploading() {
      return this.chips.filter((c) => !c.locked && c.state === "uploading").length;
    }

    hasImages() {
      return this.chips.some((c) => !c.locked && c.state !== "refused");
    }

    // A send goes with the ready chips: they, and the refused ones beside them, stay
    // shown but cannot be removed nor sent again; returned, to unlock or discard as the
    // server decides.
    take() {
      const chips = this.chips.filter((c) => !c.locked && c.state !== "uploading");
      for (const chip of chips) {
        chip.locked = true;
        chip.show();
      }
      this.changed();
      return chips;
    }

    // The server refused the send: the chips are the composer's again.
    unlock(chips) {
      for (const chip of chips) {
        chip.locked = false;
        chip.show();
      }
      this.changed();
    }

    // The server stored the send, or the person removed a chip.
    discard(chips, byHand) {
      const gone = new Set(chips);
      for (const chip of gone) chip.dispose();
      this.chips = this.chips.filter((c) => !gone.has(c));
      this.list.hidden = this.chips.length === 0;
      if (byHand) {
        // Focus goes on to another chip's remove button, or back to the box.
        const next = this.chips.find((c) => !c.locked);
        (next ? next.remove : this.composerInput).focus();
      }
      this.changed();
    }

    changed() {
      if (this.onChange) this.onChange();
    }
  }

  window.AttachmentTray = AttachmentTray;
})();
