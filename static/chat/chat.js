// The chat page: the messages, the composer and the one websocket of this tab, tied
// together here. The protocol is docs/websocket.md; what the page does with each frame is
// frame_handlers.js; the messages shown in message_thread.js, each rendered in
// message_view.js and markdown.js (with facts.js, versions.js and question_editor.js),
// when in render_scheduler.js (which also follows the bottom); the reconnecting socket in
// socket.js, asking again after a silence in silence_watch.js; the composer in
// composer.js (its images in attachments.js, their viewer in image_viewer.js), what a
// send must be in send_checks.js and the sends not yet confirmed in pending_sends.js; the
// sidebar (the list, search, keeping it in order) in sidebar.js; opening at a message in
// message_reveal.js; the tab's address and title in tab_address.js.
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
    // An earlier question being sent again: {clientId, view}, until its `thread` comes.
    editing: null,
    // The version asked for with "< >", and where its message was: it is shown there.
    anchor: null,
    // Whether the server was asked for the branch of the message the address names.
    revealBranchAsked: false,
  };

  // --- Rendering and following the bottom (render_scheduler.js) ---------------------
  const reveal = new MessageReveal(ui.scroller);
  const renders = new RenderScheduler({ scroller: ui.scroller, scrollBottom: ui.scrollBottom, reveal });

  // --- Messages ---------------------------------------------------------------------
  // A resync for one answer asks about all of them: one subscribe names every answer held.
  const viewer = new ImageViewer($("image-viewer"));
  const viewHooks = {
    scheduleRender: (view) => renders.scheduleRender(view),
    requestResync: () => subscribe(),
    openImage: (attachment, name, opener) => viewer.open(attachment, name, opener),
    pickedModel: () => ui.model.value,
    showVersion,
    editQuestion,
  };

  const thread = new MessageThread({
    list: ui.messageList,
    emptyState: ui.emptyState,
    stop: ui.stop,
    hooks: viewHooks,
    renders,
    currentId: () => state.conversationId,
    catchUp,
    // The answers' endings the page may have missed are asked for again (silence_watch.js).
    silence: new SilenceWatch({
      unsettled: () => thread.unsettledViews(),
      canAsk: (now) => socket.isOpen && now - lastSubscribeAt >= SilenceWatch.SILENCE_MS,
      ask: () => subscribe(),
    }),
  });

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

  // The message the address names (#m123, ?m=123): shown at once if it is on the page;
  // else it is on another branch, which the server is asked to show (once subscribed).
  function revealFromAddress() {
    const target = reveal.want();
    if (target === null) return null;
    renders.pinned = false;
    const view = thread.views.get(target);
    if (view) reveal.show(view);
    else if (state.conversationId !== null && socket.send({ type: "branch", message_id: target })) state.revealBranchAsked = true;
    else state.revealBranchAsked = false;
    return target;
  }

  // --- The socket -------------------------------------------------------------------
  const socket = new ReconnectingSocket(urls.socket, {
    onOpen: socketOpened,
    onFrame: (frame) => frames.handle(frame),
    onBadFrame: () =>
      showError(gettext("The server sent something this page did not understand. Reload the page if the chat stops updating.")),
    onState: showConnection,
    // Say why before the page moves to the sign-in page.
    onSignedOut: () => {
      showError(gettext("You were signed out. Sign in again to go on; this page will take you there."));
      setTimeout(() => location.assign(`${urls.login}?next=${encodeURIComponent(location.pathname)}`), 1500);
    },
  });

  // The server answers with what this page lacks (message_thread.js says what it holds).
  let lastSubscribeAt = -Infinity;
  function subscribe() {
    if (state.conversationId === null) return;
    if (socket.send(thread.subscribeFrame(state.conversationId))) lastSubscribeAt = performance.now();
  }

  // A frame about a message the page never saw (its `message` frame, or its question's,
  // was lost): what the page lacks is asked for again, at most once per GUESS_RESUBSCRIBE_MS.
  const GUESS_RESUBSCRIBE_MS = 2000;
  function catchUp() {
    if (performance.now() - lastSubscribeAt >= GUESS_RESUBSCRIBE_MS) subscribe();
  }

  function socketOpened() {
    subscribe();
    // The sends not yet confirmed go (again); one typed before the socket was up leaves the box.
    for (const pending of pendings.sendAll((frame) => socket.send(frame))) {
      if (ui.input.value === pending.text) clearComposer();
      hideError();
    }
  }

  // --- Sends not yet confirmed (pending_sends.js), the tab's address (tab_address.js) --
  const pendings = new PendingSends();
  const address = new TabAddress({
    url: urls.conversation,
    currentId: () => state.conversationId,
    title: () => state.conversation && state.conversation.title,
  });

  function conversationShown(conversation) {
    // Another conversation: its own key. The same one again (a rename, a new title): the
    // picker keeps what the person may have just picked.
    if (!state.conversation || state.conversation.id !== conversation.id) {
      keyPicker.fill(conversation.key_id);
      toolPicker.fill(conversation);
    }
    settings.show(conversation);
    state.conversation = conversation;
    address.showTitle();
    facts.show(conversation);
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
    const refusal = settings.refusal(pending.model) || SendChecks.sendRefusal(pendings.frame(pending), messageMaxChars);
    if (refusal) {
      showError(refusal);
      return;
    }
    if (!attachmentIds.length && pendings.waitingWith(text)) return;
    pending.chips = tray.take();
    pendings.add(pending);
    if (!socket.send(pendings.frame(pending))) {
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
    renders.pinned = true;
    renders.scrollToBottom();
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
    const view = thread.streamingView();
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
    const answered = thread.views.get(messageId);
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
    renders.pinned = true;
  });

  YiMarkdown.handleCopyButtons(ui.messageList);

  // --- The server's frames (frame_handlers.js) ---------------------------------------
  const frames = new FrameHandlers({
    state,
    thread,
    renders,
    reveal,
    socket,
    sidebar,
    pendings,
    address,
    composer,
    showError,
    conversationShown,
    catchUp,
  });

  // --- Start ------------------------------------------------------------------------
  for (const message of initialMessages) thread.addOrUpdateMessage(message);
  ui.emptyState.hidden = initialMessages.length > 0;
  facts.show(state.conversation);
  settings.show(state.conversation);
  composer.changed();
  const notice = sidebar.takeNotice();
  if (notice) showError(notice, true);
  if (revealFromAddress() === null) renders.scrollToBottom();
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
