// The chat page: the messages, the composer and the one websocket of this tab. The
// protocol is docs/websocket.md; message rendering is in message_view.js and markdown.js
// (with facts.js, versions.js and question_editor.js), the reconnecting socket in
// socket.js, the composer in composer.js (its images in attachments.js, their viewer in
// image_viewer.js) and what a send must be in send_checks.js, the sidebar (the list,
// search, keeping it in order) in sidebar.js, opening at a message in message_reveal.js.
(function () {
  "use strict";

  // --- What the server put in the page (json_script) ------------------------------
  function readJSON(id) {
    const node = document.getElementById(id);
    if (!node) return null;
    try {
      return JSON.parse(node.textContent);
    } catch (err) {
      return null;
    }
  }
  const initialConversation = readJSON("conversation-data");
  const initialMessages = readJSON("messages-data") || [];
  const defaultModel = readJSON("default-model") || "";
  const messageMaxChars = readJSON("message-max-chars") || Infinity; // MESSAGE_MAX_CHARS
  const imageLimits = readJSON("image-limits") || {}; // IMAGES_PER_MESSAGE, IMAGE_MAX_BYTES
  const conversationsNext = readJSON("conversations-next"); // the list's second page
  const keyChoices = readJSON("key-choices"); // the user's keys, masked (chat/credentials.py)
  const toolList = readJSON("tool-list") || []; // the built-in tools: [{name, description}]

  const $ = (id) => document.getElementById(id);
  const app = $("chat-app");
  const ui = {
    connection: $("connection-status"),
    scroller: $("message-scroller"),
    messageList: $("message-list"),
    emptyState: $("empty-state"),
    scrollBottom: $("scroll-bottom"),
    composer: $("composer"),
    input: $("message-input"),
    send: $("send-button"),
    stop: $("stop-button"),
    model: $("model-select"),
    key: $("key-select"),
    modelError: $("model-error"),
    error: $("send-error"),
    errorText: $("send-error-text"),
    errorDismiss: $("send-error-dismiss"),
  };
  const urls = {
    models: app.dataset.modelsUrl,
    login: app.dataset.loginUrl,
    home: app.dataset.homeUrl,
    api: app.dataset.conversationsUrl,
    search: app.dataset.searchUrl,
    exportFile: app.dataset.exportUrl,
    importFile: app.dataset.importUrl,
    conversation: (id) =>
      app.dataset.conversationUrl.replace(app.dataset.conversationUrlPlaceholder, String(id)),
    socket: (location.protocol === "https:" ? "wss" : "ws") + "://" + location.host + "/ws/chat/",
  };

  const keyPicker = new KeyPicker(ui.key, keyChoices);
  AnswerFacts.keyName = (keyId) => keyPicker.describe(keyId);
  // A conversation without a key of its own uses the default, whatever that is now.
  ConversationFacts.keyName = (keyId) => (keyId == null ? keyPicker.defaultText() : keyPicker.describe(keyId));
  const toolPicker = new ToolPicker({
    toggle: $("tools-toggle"),
    choice: $("tool-choice-select"),
    hint: $("tool-hint"),
    model: ui.model,
    tools: toolList,
  });

  // The conversation's settings (system prompt, temperature, top_p, max_tokens): they go
  // with the next send, edit or retry (conversation_settings.js).
  const settings = new ConversationSettings({
    dialog: $("settings-dialog"),
    button: $("settings-button"),
    model: ui.model,
    defaults: readJSON("conversation-defaults"),
    limits: readJSON("params-limits"),
    csrfToken: app.dataset.csrfToken,
  });

  const state = {
    conversation: initialConversation,
    conversationId: initialConversation ? initialConversation.id : null,
    views: new Map(), // message id -> MessageView
    // Sends not yet confirmed by the server: {clientId, text, conversationId, model,
    // attachmentIds, chips (attachments.js: kept until the server stores the send)}
    pending: [],
    // An earlier question being sent again: {clientId, view}, until its `thread` comes.
    editing: null,
    // Messages a `thread` took off the page (another branch): their late frames are not
    // theirs to show.
    offBranch: new Set(),
    locked: false,
    // The version asked for with "< >", and where its message was: it is shown there.
    anchor: null,
  };

  // --- Rendering: at once while the page keeps up, else once per animation frame ----
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
  const dirty = new Set();
  let frameRequest = null; // {at, frame, timer} while a render is waited for
  let followAskedAt = null; // when the frame that scrolls to the bottom was asked for
  let frameLate = false; // whether the last animation frame asked for came late
  let lastRender = { end: -Infinity, cost: 0 };
  let pinnedToBottom = true;

  function keepingUp() {
    return !frameLate && performance.now() - lastRender.end >= lastRender.cost / RENDER_SHARE;
  }

  function scheduleRender(view) {
    dirty.add(view);
    if (frameRequest === null && keepingUp()) renderDirty();
    else frameWait();
  }

  function frameWait() {
    if (frameRequest === null) {
      frameRequest = { at: performance.now(), frame: requestAnimationFrame(renderFrame),
                       timer: setTimeout(renderFrame, FRAME_LATE_MS) };
    } else if (performance.now() - frameRequest.at >= FRAME_LATE_MS) {
      renderFrame(); // a hidden tab's timers are slowed too; socket frames are not
    }
  }

  function renderFrame() {
    if (frameRequest !== null) {
      frameLate = performance.now() - frameRequest.at > FRAME_PROMPT_MS;
      cancelAnimationFrame(frameRequest.frame);
      clearTimeout(frameRequest.timer);
      frameRequest = null;
    }
    renderDirty();
  }

  // Renders every view with news, within one frame's budget; what is left waits for a frame.
  function renderDirty() {
    const started = performance.now();
    const deadline = started + FRAME_BUDGET_MS;
    const views = [...dirty];
    dirty.clear();
    for (const view of views) if (view.render(deadline)) dirty.add(view);
    const end = performance.now();
    lastRender = { end, cost: end - started };
    if (dirty.size) frameWait();
    if (reveal.keep()) pinnedToBottom = false;
    else if (pinnedToBottom && followAskedAt === null) {
      // Scrolled in the frame, where the browser lays out anyway: reading the height now
      // would lay the page out once per token.
      followAskedAt = end;
      requestAnimationFrame(followBottom);
    }
  }

  function scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
  }

  // Later in the frame: unless the page was opened at a message meanwhile.
  function followBottom() {
    if (followAskedAt !== null) {
      frameLate = performance.now() - followAskedAt > FRAME_PROMPT_MS;
      followAskedAt = null;
    }
    if (pinnedToBottom) scrollToBottom();
  }

  ui.scroller.addEventListener(
    "scroll",
    () => {
      const fromBottom = ui.scroller.scrollHeight - ui.scroller.scrollTop - ui.scroller.clientHeight;
      pinnedToBottom = fromBottom < 48;
      ui.scrollBottom.hidden = pinnedToBottom;
    },
    { passive: true },
  );
  ui.scrollBottom.addEventListener("click", () => {
    pinnedToBottom = true;
    ui.scrollBottom.hidden = true;
    scrollToBottom();
  });

  // --- Messages ---------------------------------------------------------------------
  // A resync for one answer asks about all of them: one subscribe names every answer held.
  const viewer = new ImageViewer($("image-viewer"));
  const viewHooks = {
    scheduleRender,
    requestResync: () => subscribe(),
    openImage: (attachment, name, opener) => viewer.open(attachment, name, opener),
    pickedModel: () => ui.model.value,
    showVersion,
    editQuestion,
  };

  function addOrUpdateMessage(message, replaces) {
    let view = state.views.get(message.id);
    if (view) {
      view.guessed = false;
      view.heard();
      // A repeated `message` frame of a streaming answer carries no text the page does
      // not already have, nor does one of an ending already shown. An ended answer that
      // streams again ("continue") starts over from the stored text the frame carries,
      // and an answer shown as streaming that the frame says has ended takes its final
      // state (a subscribe's catch-up, after the `done` was lost).
      if (!(view.streaming && message.status === "streaming") && !view.endedAs(message)) view.update(message);
      else view.showVersions(message.sibling_ids);
    } else {
      state.offBranch.delete(message.id);
      view = new MessageView(message, viewHooks);
      view.lock(state.locked);
      state.views.set(message.id, view);
      const old = (replaces !== undefined && state.views.get(replaces)) || state.views.get(olderBranchOf(message));
      if (old) {
        // "Retry": the new answer takes the old one's place (the server keeps the old
        // one as another branch of the conversation).
        old.el.replaceWith(view.el);
        state.views.delete(old.id);
        state.offBranch.add(old.id);
        dirty.delete(old);
      } else {
        insertInOrder(view.el, message.id);
      }
    }
    ui.emptyState.hidden = true;
    if (pinnedToBottom) requestAnimationFrame(followBottom);
    refreshStreamingControls();
    return view;
  }

  // A `thread`: the branch the conversation shows now replaces the page's. Views of
  // messages on both stay as they are (a streaming answer keeps its seq and text).
  function replaceThread(messages) {
    const keep = new Set(messages.map((m) => m.id));
    for (const view of [...state.views.values()]) {
      if (keep.has(view.id)) continue;
      state.views.delete(view.id);
      state.offBranch.add(view.id);
      dirty.delete(view);
      view.el.remove();
    }
    for (const message of messages) addOrUpdateMessage(message);
    ui.messageList.append(...messages.map((m) => state.views.get(m.id).el));
    ui.emptyState.hidden = messages.length > 0;
  }

  // "< 2 / 3 >": show the branch through another version; the server sends the thread.
  function showVersion(messageId, from) {
    if (!socket.send({ type: "branch", message_id: messageId })) {
      showError(gettext("Not connected to the server. Try again once the connection is back."));
      return;
    }
    state.anchor = { id: messageId, top: from.el.getBoundingClientRect().top };
  }

  // An earlier question, edited: sent as a new version of it, answered on a new branch.
  function editQuestion(view, text) {
    const frame = {
      type: "edit",
      conversation_id: state.conversationId,
      message_id: view.id,
      text,
      model: ui.model.value || defaultModel,
      key_id: keyPicker.value(),
      tools: toolPicker.on,
      tool_choice: toolPicker.choice(),
      client_id: SendChecks.newClientId(),
      ...settings.frameFields(),
    };
    const refusal = settings.refusal(frame.model) || SendChecks.sendRefusal(frame, messageMaxChars);
    if (refusal) {
      view.editor.showError(refusal);
      return;
    }
    if (!socket.send(frame)) {
      view.editor.showError(gettext("Not connected to the server. Your edit is kept here; send it once the connection is back."));
      return;
    }
    state.editing = { clientId: frame.client_id, view };
    view.editor.setBusy(true);
  }

  // Ids grow with time, so id order is the conversation's order, whatever order the
  // frames came in (a catch-up after a gap must not put an answer above its question).
  function insertInOrder(el, id) {
    let before = ui.messageList.lastElementChild;
    while (before && Number(before.dataset.messageId) > id) before = before.previousElementSibling;
    if (before) before.after(el);
    else ui.messageList.prepend(el);
  }

  // A subscribe's catch-up sends a retry's answer without `replaces`; it is an answer to
  // the same question as one shown, and the newer one is the conversation's branch.
  function olderBranchOf(message) {
    if (message.role !== "assistant" || message.parent_id == null) return undefined;
    for (const view of state.views.values()) {
      if (view.role === "assistant" && view.id < message.id && view.message.parent_id === message.parent_id) {
        return view.id;
      }
    }
    return undefined;
  }

  // A frame for a message this page never saw (its `message` frame was sent while the
  // socket was down): show it as a streaming answer and let the seq logic catch up.
  // Guessed, it does not count as held for `after_id`, so the subscribe still asks for
  // the messages before it.
  function viewFor(messageId) {
    let view = state.views.get(messageId);
    if (!view) {
      view = addOrUpdateMessage({
        id: messageId,
        conversation_id: state.conversationId,
        role: "assistant",
        status: "streaming",
        content: "",
      });
      view.guessed = true;
      // Its `message` frame, and its question's, were lost (a broadcast while Redis was
      // down): catch up from the database, which sends what came after the newest
      // message this page really has.
      if (performance.now() - lastSubscribeAt >= GUESS_RESUBSCRIBE_MS) subscribe();
    }
    return view;
  }

  function streamingViews() {
    const views = [];
    for (const view of state.views.values()) if (view.role === "assistant" && view.streaming) views.push(view);
    return views.sort((a, b) => a.id - b.id);
  }

  function streamingView() {
    return streamingViews().pop() || null;
  }

  // Answers whose real ending the page may still have to learn: those streaming, and
  // those shown as not saved (the server stores the ending later and sends a second
  // `done`, which a Redis outage or a dropped socket can lose).
  function unsettledViews() {
    const views = streamingViews();
    for (const view of state.views.values()) {
      if (view.role === "assistant" && !view.streaming && view.message.error_code === "not_saved") views.push(view);
      // A tool still running: its result may come while the socket is down.
      if (view.role === "tool" && view.streaming) views.push(view);
    }
    return views.sort((a, b) => a.id - b.id);
  }

  function refreshStreamingControls() {
    const streaming = streamingView();
    if (state.locked !== Boolean(streaming)) {
      state.locked = Boolean(streaming);
      for (const view of state.views.values()) view.lock(state.locked);
    }
    ui.stop.hidden = !streaming;
    if (!streaming) {
      ui.stop.disabled = false;
      ui.stop.querySelector(".btn-label").textContent = gettext("Stop");
    }
    if (unsettledViews().length) silence.start();
  }

  // The answers' endings the page may have missed are asked for again (silence_watch.js).
  const GUESS_RESUBSCRIBE_MS = 2000;
  let lastSubscribeAt = -Infinity;
  const silence = new SilenceWatch({
    unsettled: unsettledViews,
    canAsk: (now) => socket.isOpen && now - lastSubscribeAt >= SilenceWatch.SILENCE_MS,
    ask: () => subscribe(),
  });

  // --- Notices ----------------------------------------------------------------------
  // The notice above the input: refusals from the server (red) and, with info, the
  // plain "waiting for the connection" note.
  function showError(sentence, info) {
    ui.errorText.textContent = sentence;
    ui.error.classList.toggle("is-info", Boolean(info));
    ui.error.hidden = false;
  }

  function hideError() {
    ui.error.hidden = true;
    ui.errorText.textContent = "";
  }

  ui.errorDismiss.addEventListener("click", () => {
    hideError();
    ui.input.focus();
  });

  function showConnection(stateName, attempt) {
    ui.connection.hidden = stateName === "open";
    ui.connection.querySelector(".connection-status-text").textContent =
      attempt > 5 ? gettext("Reconnecting… (if this lasts, reload the page)") : gettext("Reconnecting…");
  }

  // --- The sidebar, the conversation's facts, opening at a message --------------------
  const sidebar = new Sidebar({
    app,
    send: (frame) => socket.send(frame),
    currentId: () => state.conversationId,
    urls,
    csrfToken: app.dataset.csrfToken,
    next: conversationsNext,
  });
  const facts = new ConversationFacts($("conversation-facts"));
  const reveal = new MessageReveal(ui.scroller);
  let revealBranchAsked = false;

  // The message the address names (#m123, ?m=123): shown at once if it is on the page;
  // else it is on another branch, which the server is asked to show (once subscribed).
  function revealFromAddress() {
    const target = reveal.want();
    if (target === null) return null;
    pinnedToBottom = false;
    const view = state.views.get(target);
    if (view) reveal.show(view);
    else if (state.conversationId !== null && socket.send({ type: "branch", message_id: target })) revealBranchAsked = true;
    else revealBranchAsked = false;
    return target;
  }

  // --- The socket -------------------------------------------------------------------
  const socket = new ReconnectingSocket(urls.socket, {
    onOpen: socketOpened,
    onFrame: handleFrame,
    onBadFrame: () =>
      showError(gettext("The server sent something this page did not understand. Reload the page if the chat stops updating.")),
    onState: showConnection,
    // Say why before the page moves to the sign-in page.
    onSignedOut: () => {
      showError(gettext("You were signed out. Sign in again to go on; this page will take you there."));
      setTimeout(() => location.assign(`${urls.login}?next=${encodeURIComponent(location.pathname)}`), 1500);
    },
  });

  // The server answers with what this page lacks (docs/websocket.md): the messages after
  // the newest one it has, and for each answer it shows as streaming, the text after the
  // last seq applied, or the answer's ending.
  const HOLDING_MAX = 50;
  function subscribe() {
    if (state.conversationId === null) return;
    const frame = {
      type: "subscribe",
      conversation_id: state.conversationId,
      holding: unsettledViews()
        .slice(-HOLDING_MAX)
        .map((view) => ({ message_id: view.id, last_seq: view.lastSeq })),
    };
    let newest = null;
    for (const view of state.views.values()) if (!view.guessed && (newest === null || view.id > newest)) newest = view.id;
    if (newest !== null) frame.after_id = newest;
    // What the page shows, so that a branch switched or an edit made elsewhere while it
    // was away comes back as the whole thread.
    frame.shown = [...ui.messageList.children]
      .map((el) => state.views.get(Number(el.dataset.messageId)))
      .filter((view) => view && !view.guessed)
      .map((view) => view.id);
    if (socket.send(frame)) lastSubscribeAt = performance.now();
  }

  function socketOpened() {
    subscribe();
    // A send whose confirmation was lost with the old socket goes again with the same
    // client_id: the server ignores it if the first one arrived. One typed before the
    // socket was up goes now, and leaves the box.
    for (const pending of state.pending) {
      socket.send(sendFrame(pending));
      if (pending.waiting) {
        pending.waiting = false;
        if (ui.input.value === pending.text) clearComposer();
        hideError();
      }
    }
  }

  function sendFrame(pending) {
    const frame = {
      type: "send",
      conversation_id: pending.conversationId,
      text: pending.text,
      model: pending.model,
      key_id: pending.keyId,
      tools: pending.tools,
      tool_choice: pending.toolChoice,
      client_id: pending.clientId,
      ...pending.settings,
    };
    if (pending.attachmentIds.length) frame.attachment_ids = pending.attachmentIds;
    return frame;
  }

  // Our own send, stored: by its client_id when the message carries one; else by its text
  // and its images, in the order sent. Two sends of images alone never match each other:
  // an upload goes with one send only.
  function pendingIndexOf(message) {
    if (message.client_id) return state.pending.findIndex((p) => p.clientId === message.client_id);
    const text = (message.content || "").trim();
    const images = (message.attachments || []).map((a) => a.id).sort((a, b) => a - b).join();
    return state.pending.findIndex(
      (p) => p.text.trim() === text && [...p.attachmentIds].sort((a, b) => a - b).join() === images,
    );
  }

  // A send from the home page made a conversation: this tab now shows it.
  function adoptConversation(conversationId) {
    const ours = state.pending.filter((p) => p.conversationId === null);
    if (state.conversationId !== null || !ours.length) return;
    state.conversationId = conversationId;
    for (const pending of ours) pending.conversationId = conversationId;
    sidebar.markCurrent(conversationId);
    addressDue = { conversationId, timer: setTimeout(addressShow, ADDRESS_WAIT_MS) };
  }

  // --- The tab's address and title: after the answer's first text -------------------
  // Changing them sets the browser's own interface to work (its address bar and tab
  // strip, in processes of their own): with ten windows streaming on two cores, that put
  // 150-250 ms on each page's first token (bench/browser.py, docs/benchmarks.md). So a
  // new conversation's address and title wait until its answer's first text is painted,
  // or ADDRESS_WAIT_MS at most.
  const ADDRESS_WAIT_MS = 1000;
  let addressDue = null; // {conversationId, timer} while they wait

  function addressSoon() {
    if (addressDue === null || addressDue.soon) return;
    addressDue.soon = true;
    requestAnimationFrame(() => setTimeout(addressShow, 0)); // after the frame that paints the text
  }

  function addressShow() {
    if (addressDue === null) return;
    clearTimeout(addressDue.timer);
    const { conversationId } = addressDue;
    addressDue = null;
    if (state.conversationId !== conversationId) return;
    history.replaceState({ conversationId }, "", urls.conversation(conversationId));
    titleShow();
  }

  function titleShow() {
    if (addressDue !== null) return; // it comes with the address
    const title = state.conversation && state.conversation.title;
    document.title = `${title || gettext("New chat")} · yiweb`;
  }

  function conversationShown(conversation) {
    // Another conversation: its own key. The same one again (a rename, a new title): the
    // picker keeps what the person may have just picked.
    if (!state.conversation || state.conversation.id !== conversation.id) {
      keyPicker.fill(conversation.key_id);
      toolPicker.fill(conversation);
    }
    settings.show(conversation);
    state.conversation = conversation;
    titleShow();
    facts.show(conversation);
  }

  // A frame about a message of a branch a `thread` took away: not for this page to show.
  function notShown(messageId) {
    return state.offBranch.has(messageId) && !state.views.has(messageId);
  }

  // A `done` for an answer the page does not show is taken up only below its question.
  function parentShown(message) {
    if (message.parent_id == null || state.views.has(message.parent_id)) return true;
    // Its question's `message` frame was lost too: the database has both.
    if (performance.now() - lastSubscribeAt >= GUESS_RESUBSCRIBE_MS) subscribe();
    return false;
  }

  const frameHandlers = {
    subscribed(frame) {
      // The server moves the socket to the conversation a send from here created.
      if (typeof frame.conversation_id === "number") adoptConversation(frame.conversation_id);
      // Opened at a message of another branch: show that branch.
      if (reveal.waiting && !revealBranchAsked && frame.conversation_id === state.conversationId) {
        revealBranchAsked = true;
        socket.send({ type: "branch", message_id: reveal.target });
      }
    },
    thread(frame) {
      if (frame.conversation_id !== state.conversationId || !Array.isArray(frame.messages)) return;
      const editing = state.editing;
      if (editing && frame.messages.some((m) => m.client_id === editing.clientId)) state.editing = null;
      const anchor = state.anchor;
      state.anchor = null;
      replaceThread(frame.messages);
      const stepped = anchor && state.views.get(anchor.id);
      if (reveal.waiting && state.views.has(reveal.target)) {
        reveal.show(state.views.get(reveal.target));
      } else if (stepped) {
        // Another version of a message: it stays where the one it replaced was.
        pinnedToBottom = false;
        ui.scroller.scrollTop += stepped.el.getBoundingClientRect().top - anchor.top;
      } else if (!reveal.keep()) {
        pinnedToBottom = true;
        requestAnimationFrame(followBottom);
      }
    },
    conversation(frame) {
      const conversation = frame.conversation;
      // Every tab of the person hears of a new conversation; the client_id says which
      // tab's send made it.
      if (frame.client_id && state.pending.some((p) => p.clientId === frame.client_id)) {
        adoptConversation(conversation.id);
      }
      if (conversation.id === state.conversationId) conversationShown(conversation);
      sidebar.changed(conversation);
    },
    conversation_updated(frame) {
      if (frame.conversation.id === state.conversationId) conversationShown(frame.conversation);
      sidebar.changed(frame.conversation);
    },
    conversation_deleted(frame) {
      sidebar.deleted(frame.conversation_id);
    },
    message(frame) {
      const message = frame.message;
      if (message.conversation_id !== undefined && message.conversation_id !== state.conversationId) return;
      const index = message.role === "user" ? pendingIndexOf(message) : -1;
      if (index !== -1) {
        tray.discard(state.pending[index].chips);
        state.pending.splice(index, 1);
      }
      if (message.attachments && message.attachments.length) sidebar.holdsImages(state.conversationId);
      addOrUpdateMessage(message, frame.replaces);
    },
    snapshot(frame) {
      if (notShown(frame.message_id)) return;
      viewFor(frame.message_id).snapshot(frame);
      refreshStreamingControls(); // it may have reopened an answer shown as ended
    },
    delta(frame) {
      if (notShown(frame.message_id)) return;
      viewFor(frame.message_id).delta(frame);
      addressSoon();
    },
    retrying(frame) {
      if (notShown(frame.message_id)) return;
      viewFor(frame.message_id).retrying(frame);
    },
    queued(frame) {
      if (notShown(frame.message_id)) return;
      viewFor(frame.message_id).queued(frame);
    },
    done(frame) {
      const view = state.views.get(frame.message_id);
      if (view) {
        view.guessed = false;
        dirty.delete(view);
        view.done(frame);
      } else if (!notShown(frame.message_id) && parentShown(frame.message)) {
        addOrUpdateMessage(frame.message);
      }
      refreshStreamingControls();
      if (pinnedToBottom) requestAnimationFrame(followBottom);
      addressSoon();
    },
    error(frame) {
      if (sidebar.refused(frame)) return;
      const editing = state.editing;
      if (editing && frame.client_id && frame.client_id === editing.clientId) {
        state.editing = null;
        if (editing.view.editor) {
          editing.view.editor.showError(frame.message || interpolate(gettext("The server refused the edit (%(code)s)."), frame, true));
          return;
        }
      }
      const index = frame.client_id ? state.pending.findIndex((p) => p.clientId === frame.client_id) : -1;
      if (index !== -1) {
        composer.restoreDraft(state.pending[index].text);
        tray.unlock(state.pending[index].chips);
        state.pending.splice(index, 1);
      }
      showError(frame.message || interpolate(gettext("The server refused the request (%(code)s)."), frame, true));
    },
  };

  function handleFrame(frame) {
    const handler = frameHandlers[frame.type];
    if (handler) handler(frame);
  }

  // --- Composer ---------------------------------------------------------------------
  function sendMessage(text, attachmentIds) {
    const pending = {
      clientId: SendChecks.newClientId(),
      text,
      conversationId: state.conversationId,
      model: ui.model.value || defaultModel,
      keyId: keyPicker.value(),
      tools: toolPicker.on,
      toolChoice: toolPicker.choice(),
      attachmentIds,
      settings: settings.frameFields(),
    };
    // Refused here, the text stays in the box and nothing is sent.
    const refusal = settings.refusal(pending.model) || SendChecks.sendRefusal(sendFrame(pending), messageMaxChars);
    if (refusal) {
      showError(refusal);
      return;
    }
    if (!attachmentIds.length && state.pending.some((p) => p.waiting && p.text === text)) return;
    pending.chips = tray.take();
    state.pending.push(pending);
    if (!socket.send(sendFrame(pending))) {
      // Connecting (the page just opened) or reconnecting: the message goes out when the
      // socket opens, and stays in the box until then so that nothing is lost.
      pending.waiting = true;
      showError(gettext("Not connected yet. Your message will be sent as soon as the connection is up."), true);
      return;
    }
    hideError();
    clearComposer();
    if (state.conversationId !== null) sidebar.touched(state.conversationId);
  }

  function clearComposer() {
    composer.clear();
    pinnedToBottom = true;
    scrollToBottom();
  }

  const composer = new Composer({
    form: ui.composer,
    input: ui.input,
    sendButton: ui.send,
    tray: {
      list: $("attachment-list"),
      input: $("attach-input"),
      button: $("attach-button"),
      overlay: $("drop-overlay"),
      uploadUrl: app.dataset.uploadUrl,
      csrfToken: app.dataset.csrfToken,
      loginPath: urls.login,
      limits: imageLimits,
    },
    onSubmit: sendMessage,
    notify: showError,
    quiet: hideError,
  });
  const tray = composer.tray;

  ui.stop.addEventListener("click", () => {
    const view = streamingView();
    if (!view) return;
    if (!socket.send({ type: "stop", message_id: view.id })) {
      showError(gettext("Not connected to the server, so the answer cannot be stopped yet. Try again in a moment."));
      return;
    }
    ui.stop.disabled = true;
    ui.stop.querySelector(".btn-label").textContent = gettext("Stopping…");
    ui.input.focus();
  });

  // Retry (a new answer to the same question, under any answer) and Continue (the model
  // goes on from the text it has, under the last one).
  ui.messageList.addEventListener("click", (event) => {
    const button = event.target.closest(".retry-button, .continue-button");
    if (!button) return;
    const messageId = Number(button.closest(".message").dataset.messageId);
    const type = button.classList.contains("retry-button") ? "retry" : "continue";
    // A retry asks the answer's model again: its window bounds max_tokens.
    const answered = state.views.get(messageId);
    const refusal = type === "retry" && settings.refusal((answered && answered.message.model) || ui.model.value);
    if (refusal) {
      showError(refusal);
      return;
    }
    if (!socket.send({ type, message_id: messageId, ...(type === "retry" ? settings.frameFields() : {}) })) {
      showError(gettext("Not connected to the server. Try again once the connection is back."));
      return;
    }
    hideError();
    pinnedToBottom = true;
  });

  YiMarkdown.handleCopyButtons(ui.messageList);

  // --- Start ------------------------------------------------------------------------
  for (const message of initialMessages) addOrUpdateMessage(message);
  ui.emptyState.hidden = initialMessages.length > 0;
  facts.show(state.conversation);
  settings.show(state.conversation);
  composer.changed();
  const notice = sidebar.takeNotice();
  if (notice) showError(notice, true);
  if (revealFromAddress() === null) scrollToBottom();
  // A search result opened in this same conversation changes only the address's #m….
  window.addEventListener("hashchange", revealFromAddress);
  // The models of the provider the chosen key is for.
  function modelsLoad() {
    const keyId = keyPicker.value();
    return loadModelPicker({
      select: ui.model,
      problem: ui.modelError,
      url: keyId === null ? urls.models : `${urls.models}?key_id=${keyId}`,
      preferred: ui.model.value || (state.conversation && state.conversation.model),
      fallback: defaultModel,
    });
  }
  keyPicker.fill(state.conversation && state.conversation.key_id);
  toolPicker.fill(state.conversation);
  ui.key.addEventListener("change", modelsLoad);
  modelsLoad();
  socket.connect();

  window.addEventListener("online", () => socket.reconnectNow());
  // Leaving the page closes the socket; that is not a drop to announce. Coming back
  // from the back/forward cache opens a fresh one.
  window.addEventListener("pagehide", () => socket.stop());
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) socket.resume();
  });
})();
