// The sidebar: the conversation list and the archived one (conversation_list.js), the
// search box (conversation_search.js), and keeping the list in order: each row's menu
// (rename inline, pin, archive, export, delete after a confirm dialog), a "Select" mode
// for doing that to several at once, exporting everything and importing an export.
// Changes go to the server over the page's socket (`change_conversations`,
// `delete_conversations`) and show when its `conversation_updated` / `conversation_deleted`
// frames come back, so every tab of the person shows the same list.
(function () {
  "use strict";

  const NOTICE_KEY = "yiweb.notice";
  const $ = (id) => document.getElementById(id);

  function title(conversation) {
    return (conversation && conversation.title) || gettext("New chat");
  }

  class Sidebar {
    // send(frame): false when not connected; currentId(): the open conversation's id;
    // urls: {api, search, exportFile, importFile, conversation(id), home, login};
    // csrfToken; next: the cursor of the list's second page (the first is in the page).
    constructor({ app, send, currentId, urls, csrfToken, next }) {
      this.app = app;
      this.send = send;
      this.currentId = currentId;
      this.urls = urls;
      this.csrfToken = csrfToken;
      this.el = $("sidebar");
      this.ui = {
        toggle: $("sidebar-toggle"),
        backdrop: $("sidebar-backdrop"),
        heading: $("sidebar-heading"),
        selectToggle: $("select-toggle"),
        selectionBar: $("selection-bar"),
        selectionCount: $("selection-count"),
        selectionAll: $("selection-all"),
        selectionArchive: $("selection-archive"),
        selectionExport: $("selection-export"),
        selectionDelete: $("selection-delete"),
        notice: $("sidebar-notice"),
        noticeText: $("sidebar-notice-text"),
        archivedToggle: $("archived-toggle"),
        exportAll: $("export-all"),
        importButton: $("import-button"),
        importInput: $("import-input"),
        dialog: $("delete-dialog"),
        dialogTitle: $("delete-dialog-title"),
        dialogText: $("delete-dialog-text"),
      };
      const scroller = $("sidebar-scroll");
      const first = Sidebar.rowsRendered();
      const listOf = (root, archived, emptyText) =>
        new ConversationList({ root, scroller, archived, apiUrl: urls.api, conversationUrl: urls.conversation, emptyText });
      this.lists = {
        active: listOf($("conversations-active"), false, gettext("No conversations yet.")),
        archived: listOf($("conversations-archived"), true, gettext("No archived conversations.")),
      };
      this.view = "active";
      this.lists.active.seed(first, next);
      this.menu = new PopupMenu($("popup-menu"));
      this.selected = new Set();
      this.selecting = false;
      this.renaming = null; // {id, input, error, clientId, refused}
      this.deleting = [];
      this.search = new ConversationSearch({
        input: $("search-input"),
        panel: $("search-panel"),
        list: $("search-results"),
        status: $("search-status"),
        searchUrl: urls.search,
        conversationUrl: urls.conversation,
        onActive: (active) => this.el.classList.toggle("is-searching", active),
      });
      this.markCurrent(currentId());
      this.listen();
    }

    get list() {
      return this.lists[this.view];
    }

    // The list's first page, as the server rendered it (the page works before this script).
    static rowsRendered() {
      return [...document.querySelectorAll("#conversation-list > .conversation-item")].map((item) => ({
        id: Number(item.dataset.conversationId),
        title: item.querySelector(".conversation-title").dataset.title || "",
        pinned: item.dataset.pinned === "true",
        archived: false,
        has_images: item.dataset.hasImages === "true",
        updated_at: item.dataset.updatedAt,
      }));
    }

    listen() {
      const ui = this.ui;
      ui.toggle.addEventListener("click", () => this.setOpen(!this.app.classList.contains("sidebar-open")));
      ui.backdrop.addEventListener("click", () => this.setOpen(false));
      document.addEventListener("keydown", (event) => {
        if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "k") {
          event.preventDefault();
          this.setOpen(true);
          this.search.focus();
        } else if (event.key === "Escape" && this.app.classList.contains("sidebar-open")) {
          this.setOpen(false);
        }
      });
      for (const list of Object.values(this.lists)) {
        list.root.addEventListener("click", (event) => this.rowClicked(event));
        list.root.addEventListener("change", (event) => {
          if (event.target.classList.contains("conversation-check")) this.checked(event.target);
        });
      }
      ui.archivedToggle.addEventListener("click", () => this.showView(this.view === "active" ? "archived" : "active"));
      ui.selectToggle.addEventListener("click", () => this.setSelecting(!this.selecting));
      ui.selectionAll.addEventListener("click", () => this.selectAll());
      ui.selectionArchive.addEventListener("click", () =>
        this.change([...this.selected], { archived: this.view === "active" }),
      );
      ui.selectionExport.addEventListener("click", (event) =>
        this.menu.toggle(ui.selectionExport, this.exportItems([...this.selected]), event.detail === 0),
      );
      ui.selectionDelete.addEventListener("click", () => this.confirmDelete([...this.selected]));
      ui.exportAll.addEventListener("click", (event) =>
        this.menu.toggle(ui.exportAll, this.exportItems(null), event.detail === 0),
      );
      ui.importButton.addEventListener("click", () => ui.importInput.click());
      ui.importInput.addEventListener("change", () => {
        const file = ui.importInput.files[0];
        ui.importInput.value = ""; // the same file again is a change again
        if (file) this.importFile(file);
      });
      ui.notice.querySelector(".btn-dismiss").addEventListener("click", () => this.say(""));
      ui.dialog.addEventListener("close", () => {
        if (ui.dialog.returnValue === "delete") this.remove(this.deleting);
        this.deleting = [];
      });
    }

    // On a phone the list is a drawer over the chat: opening it takes the focus into it
    // (the open conversation, else New chat: not the search box, whose keyboard would
    // cover the list), and closing it gives the focus back to its button, so a keyboard or
    // screen reader is never left on what the drawer covers or on what it hid.
    setOpen(open) {
      const was = this.app.classList.contains("sidebar-open");
      this.app.classList.toggle("sidebar-open", open);
      this.ui.toggle.setAttribute("aria-expanded", String(open));
      this.ui.backdrop.hidden = !open;
      if (open === was || getComputedStyle(this.ui.toggle).display === "none") return;
      if (open) (this.el.querySelector(".conversation-link[aria-current]") || $("new-chat")).focus();
      else if (this.el.contains(document.activeElement) || document.activeElement === document.body) this.ui.toggle.focus();
    }

    // --- What the server says changed ---------------------------------------------------
    markCurrent(id) {
      for (const list of Object.values(this.lists)) list.markCurrent(id);
    }

    // A conversation made (`conversation`) or changed (`conversation_updated`), here or in
    // another tab: into the list it now belongs to, where its order puts it.
    changed(conversation) {
      const [here, there] = conversation.archived ? ["archived", "active"] : ["active", "archived"];
      this.lists[there].remove(conversation.id);
      this.lists[here].upsert(conversation);
      if (this.renaming && this.renaming.id === conversation.id && this.renaming.clientId) this.renameEnd();
      this.selectionChanged();
    }

    deleted(conversationId) {
      const gone = this.lists.active.remove(conversationId) || this.lists.archived.remove(conversationId);
      this.selected.delete(conversationId);
      this.selectionChanged();
      if (conversationId !== this.currentId()) return;
      // The open conversation is gone (here or in another tab): the home page says so.
      const said = gone
        ? interpolate(gettext("“%(title)s” was deleted."), { title: title(gone) }, true)
        : gettext("This conversation was deleted.");
      try {
        sessionStorage.setItem(NOTICE_KEY, said);
      } catch (err) {
        /* storage disabled: the home page opens without the notice */
      }
      location.assign(this.urls.home);
    }

    // This tab sent a message in it: it is now the most recently used.
    touched(conversationId) {
      const list = this.lists.active;
      const data = list.get(conversationId);
      if (data) list.upsert({ ...data, updated_at: new Date().toISOString() });
    }

    // An image was sent in it: its row gets the mark (a new conversation's frame cannot say).
    holdsImages(conversationId) {
      const data = this.list.get(conversationId);
      if (data && !data.has_images) this.list.upsert({ ...data, has_images: true });
    }

    // A refusal of a change this sidebar asked for (its client_id); true if it was one.
    refused(frame) {
      if (this.renaming && frame.client_id && frame.client_id === this.renaming.clientId) {
        this.renaming.clientId = null;
        this.renaming.refused = this.renaming.input.value;
        this.renaming.error.textContent = frame.message;
        this.renaming.error.hidden = false;
        this.renaming.input.focus();
        return true;
      }
      if (frame.client_id && frame.client_id === this.changeClientId) {
        this.say(frame.message);
        return true;
      }
      return false;
    }

    // The notice a page left before it moved here (its conversation was deleted).
    takeNotice() {
      try {
        const notice = sessionStorage.getItem(NOTICE_KEY);
        sessionStorage.removeItem(NOTICE_KEY);
        return notice;
      } catch (err) {
        return null;
      }
    }

    say(sentence) {
      this.ui.noticeText.textContent = sentence;
      this.ui.notice.hidden = !sentence;
    }

    // --- Rows -----------------------------------------------------------------------------
    rowClicked(event) {
      const item = event.target.closest(".conversation-item");
      if (!item) return;
      const id = Number(item.dataset.conversationId);
      const more = event.target.closest(".conversation-more");
      if (more) {
        this.menu.toggle(more, this.rowItems(id), event.detail === 0);
        return;
      }
      if (this.selecting && event.target.closest(".conversation-link")) {
        // In Select mode a row is picked, not opened.
        event.preventDefault();
        const check = item.querySelector(".conversation-check");
        check.checked = !check.checked;
        this.checked(check);
      }
    }

    rowItems(id) {
      const data = this.list.get(id);
      if (!data) return [];
      return [
        { label: gettext("Rename"), action: () => this.renameStart(id) },
        { label: data.pinned ? gettext("Unpin") : gettext("Pin"), action: () => this.change([id], { pinned: !data.pinned }) },
        { label: data.archived ? gettext("Unarchive") : gettext("Archive"), action: () => this.change([id], { archived: !data.archived }) },
        ...this.exportItems([id]),
        { label: gettext("Delete…"), danger: true, action: () => this.confirmDelete([id]) },
      ];
    }

    exportItems(ids) {
      const url = (format) => {
        const target = new URL(this.urls.exportFile, location.href);
        if (ids) target.searchParams.set("ids", ids.join(","));
        target.searchParams.set("format", format);
        return target.pathname + target.search;
      };
      if (ids && !ids.length) return [{ label: gettext("Select conversations to export"), action: null }];
      return [
        { label: gettext("Export as Markdown"), href: url("md") },
        { label: gettext("Export as JSON (to import back)"), href: url("json") },
      ];
    }

    change(ids, fields) {
      if (!ids.length) return;
      this.changeClientId = SendChecks.newClientId();
      const frame = { type: "change_conversations", conversation_ids: ids, client_id: this.changeClientId, ...fields };
      if (!this.send(frame)) this.say(gettext("Not connected to the server. Try again once the connection is back."));
      else this.say("");
    }

    // --- Rename inline --------------------------------------------------------------------
    renameStart(id) {
      if (this.renaming) this.renameEnd();
      const item = this.list.element(id);
      const data = this.list.get(id);
      if (!item || !data) return;
      const link = item.querySelector(".conversation-link");
      const input = document.createElement("input");
      input.className = "conversation-rename";
      input.value = data.title || "";
      input.setAttribute("aria-label", interpolate(gettext("Rename “%(title)s”"), { title: title(data) }, true));
      const error = document.createElement("p");
      error.className = "conversation-rename-error";
      error.setAttribute("role", "alert");
      error.hidden = true;
      link.hidden = true;
      link.before(input);
      item.append(error);
      item.classList.add("is-renaming");
      this.renaming = { id, input, error, link, item, old: data.title || "", clientId: null, refused: null };
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.isComposing && event.keyCode !== 229) {
          event.preventDefault();
          this.renameSave();
        } else if (event.key === "Escape") {
          event.preventDefault();
          event.stopPropagation();
          this.renameEnd(true);
        }
      });
      // Leaving the box keeps a new title, and gives up one the server refused.
      input.addEventListener("blur", () => {
        if (!this.renaming || this.renaming.input !== input || this.renaming.clientId) return;
        if (input.value === this.renaming.old || input.value === this.renaming.refused) this.renameEnd();
        else this.renameSave();
      });
      input.focus();
      input.select();
    }

    renameSave() {
      const renaming = this.renaming;
      if (!renaming || renaming.clientId) return;
      if (renaming.input.value === renaming.old) {
        this.renameEnd(true);
        return;
      }
      renaming.clientId = SendChecks.newClientId();
      renaming.error.hidden = true;
      const frame = {
        type: "change_conversations",
        conversation_ids: [renaming.id],
        title: renaming.input.value,
        client_id: renaming.clientId,
      };
      if (!this.send(frame)) {
        renaming.clientId = null;
        renaming.error.textContent = gettext("Not connected to the server. Try again once the connection is back.");
        renaming.error.hidden = false;
      }
    }

    renameEnd(refocus) {
      const renaming = this.renaming;
      if (!renaming) return;
      this.renaming = null;
      const hadFocus = refocus || renaming.item.contains(document.activeElement);
      renaming.input.remove();
      renaming.error.remove();
      renaming.link.hidden = false;
      renaming.item.classList.remove("is-renaming");
      if (hadFocus) renaming.item.querySelector(".conversation-more").focus();
    }

    // --- Delete ---------------------------------------------------------------------------
    confirmDelete(ids) {
      if (!ids.length) return;
      const ui = this.ui;
      if (ids.length === 1) {
        const data = this.list.get(ids[0]) || this.lists.active.get(ids[0]) || this.lists.archived.get(ids[0]);
        ui.dialogTitle.textContent = gettext("Delete this conversation?");
        ui.dialogText.textContent = interpolate(
          gettext("“%(title)s” will be deleted, with all its messages and the images in it. This cannot be undone."),
          { title: title(data) },
          true,
        );
      } else {
        ui.dialogTitle.textContent = interpolate(gettext("Delete %(count)s conversations?"), { count: ids.length }, true);
        ui.dialogText.textContent = interpolate(
          gettext("%(count)s conversations will be deleted, with all their messages and the images in them. This cannot be undone."),
          { count: ids.length },
          true,
        );
      }
      this.deleting = ids;
      ui.dialog.returnValue = "";
      ui.dialog.showModal();
      ui.dialog.querySelector("button[value=cancel]").focus();
    }

    remove(ids) {
      if (!this.send({ type: "delete_conversations", conversation_ids: ids })) {
        this.say(gettext("Not connected to the server, so nothing was deleted. Try again once the connection is back."));
      }
    }

    // --- Select mode ----------------------------------------------------------------------
    setSelecting(selecting) {
      this.selecting = selecting;
      this.el.classList.toggle("is-selecting", selecting);
      this.ui.selectToggle.setAttribute("aria-pressed", String(selecting));
      this.ui.selectToggle.textContent = selecting ? gettext("Done") : gettext("Select");
      this.ui.selectionBar.hidden = !selecting;
      if (!selecting) {
        this.selected.clear();
        for (const check of this.el.querySelectorAll(".conversation-check")) check.checked = false;
      }
      this.selectionChanged();
    }

    checked(check) {
      const id = Number(check.closest(".conversation-item").dataset.conversationId);
      if (check.checked) this.selected.add(id);
      else this.selected.delete(id);
      this.selectionChanged();
    }

    selectAll() {
      for (const id of this.list.ids()) this.selected.add(id);
      for (const check of this.list.root.querySelectorAll(".conversation-check")) check.checked = true;
      this.selectionChanged();
    }

    selectionChanged() {
      // Only what this view shows can be acted on.
      for (const id of [...this.selected]) if (!this.list.get(id)) this.selected.delete(id);
      const count = this.selected.size;
      const ui = this.ui;
      ui.selectionCount.textContent = count ? interpolate(gettext("%(count)s selected"), { count }, true) : gettext("None selected");
      ui.selectionArchive.textContent = this.view === "active" ? gettext("Archive") : gettext("Unarchive");
      for (const button of [ui.selectionArchive, ui.selectionExport, ui.selectionDelete]) button.disabled = !count;
    }

    // --- Archived view --------------------------------------------------------------------
    showView(view) {
      this.view = view;
      const archived = view === "archived";
      this.lists.active.root.hidden = archived;
      this.lists.archived.root.hidden = !archived;
      this.ui.heading.textContent = archived ? gettext("Archived") : gettext("Conversations");
      this.ui.archivedToggle.setAttribute("aria-pressed", String(archived));
      this.ui.archivedToggle.textContent = archived ? gettext("Back to conversations") : gettext("Archived");
      this.setSelecting(false);
      if (archived) this.lists.archived.load();
    }

    // --- Import ---------------------------------------------------------------------------
    async importFile(file) {
      const form = new FormData();
      form.append("file", file, file.name);
      this.say("");
      this.ui.importButton.disabled = true;
      this.ui.importButton.textContent = gettext("Importing…");
      try {
        const response = await fetch(this.urls.importFile, {
          method: "POST",
          body: form,
          headers: { "X-CSRFToken": this.csrfToken, Accept: "application/json" },
          credentials: "same-origin",
        });
        const body = await response.json().catch(() => null);
        if (response.status === 201 && body && Array.isArray(body.conversation_ids) && body.conversation_ids.length) {
          location.assign(this.urls.conversation(body.conversation_ids[0]));
          return;
        }
        if (body && typeof body.message === "string") this.say(body.message);
        else if (response.redirected && new URL(response.url).pathname === this.urls.login) {
          this.say(gettext("You were signed out, so nothing was imported. Sign in again and import the file."));
        } else if (response.status === 403) {
          this.say(
            gettext("The server refused the import (the page's security token is out of date). Reload the page and try again."),
          );
        } else this.say(interpolate(gettext("The import failed (HTTP %(status)s)."), response, true));
      } catch (err) {
        this.say(gettext("The import failed: the server could not be reached."));
      } finally {
        this.ui.importButton.disabled = false;
        this.ui.importButton.textContent = gettext("Import…");
      }
    }
  }

  window.Sidebar = Sidebar;
})();
