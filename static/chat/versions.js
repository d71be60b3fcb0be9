// "< 2 / 3 >": the versions of a message (other answers to the same question, or other
// versions of an edited question), from its `sibling_ids`. Stepping asks the server to
// show the branch through the neighbouring version (a `branch` frame); the page changes
// when the server's `thread` comes back, so every tab shows the same thing.
(function () {
  "use strict";

  function button(className, label, path) {
    const node = document.createElement("button");
    node.type = "button";
    node.className = `btn btn-icon btn-ghost ${className}`;
    node.setAttribute("aria-label", label);
    node.title = label;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "path");
    line.setAttribute("d", path);
    line.setAttribute("stroke", "currentColor");
    line.setAttribute("stroke-width", "2");
    line.setAttribute("stroke-linecap", "round");
    line.setAttribute("stroke-linejoin", "round");
    line.setAttribute("fill", "none");
    svg.append(line);
    node.append(svg);
    return node;
  }

  class VersionStepper {
    // onStep(siblingId): show the version with that id.
    constructor(onStep) {
      this.onStep = onStep;
      this.el = document.createElement("div");
      this.el.className = "versions";
      this.el.setAttribute("role", "group");
      this.el.setAttribute("aria-label", gettext("Versions"));
      this.previous = button("version-previous", gettext("Previous version"), "M15 6l-6 6 6 6");
      this.next = button("version-next", gettext("Next version"), "M9 6l6 6-6 6");
      this.position = document.createElement("span");
      this.position.className = "version-position";
      this.el.append(this.previous, this.position, this.next);
      this.el.hidden = true;
      this.ids = [];
      this.index = 0;
      this.locked = false;
      this.previous.addEventListener("click", () => this.step(-1));
      this.next.addEventListener("click", () => this.step(1));
    }

    show(id, siblingIds) {
      const ids = Array.isArray(siblingIds) && siblingIds.includes(id) ? siblingIds : [id];
      this.ids = ids;
      this.index = ids.indexOf(id);
      this.el.hidden = ids.length < 2;
      this.position.textContent = `${this.index + 1} / ${ids.length}`;
      this.position.setAttribute(
        "aria-label",
        interpolate(gettext("Version %(n)s of %(count)s"), { n: this.index + 1, count: ids.length }, true),
      );
      this.refresh();
    }

    // While an answer is being written, the branch cannot be changed under it.
    lock(locked) {
      this.locked = locked;
      this.refresh();
    }

    refresh() {
      this.previous.disabled = this.locked || this.index <= 0;
      this.next.disabled = this.locked || this.index >= this.ids.length - 1;
    }

    step(by) {
      const target = this.ids[this.index + by];
      if (target === undefined || this.locked) return;
      this.onStep(target);
    }
  }

  window.VersionStepper = VersionStepper;
})();
