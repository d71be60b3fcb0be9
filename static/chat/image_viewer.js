// The image viewer: a sent image at full size in a modal <dialog>, with what the model
// was actually sent (the stored image, after scaling and re-encoding), which may differ
// from the file the person chose: its resolution, its format and its size.
(function () {
  "use strict";

  function sizeText(bytes) {
    return bytes >= 1000000 ? `${(bytes / 1000000).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1000))} KB`;
  }

  function formatName(mediaType) {
    const subtype = String(mediaType || "").split("/")[1] || "";
    return subtype.toUpperCase();
  }

  // "1600 × 1200 pixels · JPEG · 412 KB · from HEIC"
  function factsText(attachment) {
    const format = formatName(attachment.media_type);
    const parts = [interpolate(gettext("%(width)s × %(height)s pixels"), attachment, true), format];
    if (typeof attachment.size_bytes === "number") parts.push(sizeText(attachment.size_bytes));
    const original = String(attachment.original_format || "");
    if (original && original.toUpperCase() !== format) parts.push(interpolate(gettext("from %(format)s"), { format: original }, true));
    return parts.join(" · ");
  }

  class ImageViewer {
    constructor(dialog) {
      this.dialog = dialog;
      this.title = dialog.querySelector(".image-viewer-title");
      this.image = dialog.querySelector(".image-viewer-image");
      this.facts = dialog.querySelector(".image-viewer-facts");
      this.link = dialog.querySelector(".image-viewer-link");
      this.opener = null;
      dialog.querySelector(".image-viewer-close").addEventListener("click", () => dialog.close());
      // A click on the backdrop (the dialog box itself, outside its content) closes it.
      dialog.addEventListener("click", (event) => {
        if (event.target === dialog) dialog.close();
      });
      dialog.addEventListener("close", () => {
        this.image.removeAttribute("src");
        if (this.opener && this.opener.isConnected) this.opener.focus();
        this.opener = null;
      });
    }

    // name: the image's accessible name in the conversation; opener gets focus back.
    open(attachment, name, opener) {
      this.opener = opener || document.activeElement;
      this.title.textContent = name;
      this.image.alt = name;
      this.image.width = attachment.width;
      this.image.height = attachment.height;
      this.image.src = attachment.url;
      this.facts.textContent = interpolate(gettext("Sent to the model: %(facts)s"), { facts: factsText(attachment) }, true);
      this.link.href = attachment.url;
      if (!this.dialog.open) this.dialog.showModal();
    }
  }

  window.ImageViewer = ImageViewer;
})();
