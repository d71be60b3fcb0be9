// The model <select>: filled from /api/models, the models of the provider a key is for.
// Each option says what the app knows of its model (the reference's facts for the Yi
// models: context window, price per million tokens, whether it takes images or calls
// tools), in words; another provider's models are listed by name alone. When the server
// cannot list the models it answers 502 with a sentence and (maybe) the reference's list:
// the sentence is shown beside the picker and the default model is still offered, so
// chatting never depends on it. The ↻ button asks the provider again (?refresh=1): the
// server keeps a list a few minutes.
(function () {
  "use strict";

  const STORAGE_KEY = "yiweb.model";
  const started = new WeakSet(); // the selects whose listeners are set
  let last = null; // the options of the latest load: the refresh button repeats it
  let loads = 0; // only the latest load fills the picker (a key changed while one was on its way)

  function storedModel() {
    try {
      return localStorage.getItem(STORAGE_KEY);
    } catch (err) {
      return null; // storage disabled (private mode)
    }
  }

  async function fetchModels(url) {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      const data = await response.json().catch(() => null);
      if (data && data.error) return { data, problem: data.error };
      if (!response.ok || !data) {
        const said = data && data.message;
        return {
          data,
          problem: said || interpolate(gettext("The model list could not be loaded (HTTP %(status)s)."), response, true),
        };
      }
      return { data, problem: null };
    } catch (err) {
      return { data: null, problem: gettext("The model list could not be loaded: the server did not answer.") };
    }
  }

  // "32K" for the reference's windows (32 * 1024), else the count of tokens.
  function windowText(tokens) {
    return tokens % 1024 === 0 ? `${tokens / 1024}K` : `${tokens.toLocaleString("en")} tokens`;
  }

  // "$3/M" when input and output cost the same, else "$0.5/$1.5/M" (input, then output).
  function priceText(model) {
    if (model.price_in == null || model.price_out == null) return null;
    const price = (value) => `$${Number(value)}`;
    return model.price_in === model.price_out
      ? `${price(model.price_in)}/M`
      : `${price(model.price_in)}/${price(model.price_out)}/M`;
  }

  // What the option shows: "yi-large · 32K · $3/M", "yi-vision · 16K · $0.19/M · images".
  function optionText(model) {
    const facts = [model.id];
    if (model.context_window) facts.push(windowText(model.context_window));
    const price = priceText(model);
    if (price) facts.push(price);
    if (model.vision) facts.push(gettext("images"));
    if (model.tools) facts.push(gettext("tools"));
    return facts.join(" · ");
  }

  // The same, in sentences, for the option's tooltip.
  function optionTitle(model) {
    const facts = [];
    if (model.context_window) facts.push(interpolate(gettext("a %(window)s-token context window"), { window: windowText(model.context_window) }, true));
    if (model.vision) facts.push(gettext("takes images"));
    if (model.tools) facts.push(gettext("calls tools"));
    if (model.price_in != null && model.price_out != null) {
      const price = (value) => `$${Number(value)}`;
      facts.push(
        interpolate(
          gettext("%(input)s per million input tokens, %(output)s per million output tokens"),
          { input: price(model.price_in), output: price(model.price_out) },
          true,
        ),
      );
    }
    const owner = model.owned_by ? ` (${model.owned_by})` : "";
    return facts.length ? `${model.id}${owner}: ${facts.join("; ")}` : `${model.id}${owner}`;
  }

  function modelsOf(data) {
    const listed = Array.isArray(data.models) ? data.models : [];
    return listed.map((m) => (typeof m === "string" ? { id: m } : m)).filter((m) => m && m.id);
  }

  function withRefresh(url) {
    const address = new URL(url, location.href);
    address.searchParams.set("refresh", "1");
    return address.pathname + address.search;
  }

  // preferred: the conversation's model, if any; then the last one picked here; then
  // the server's default.
  async function load({ select, problem, url, preferred, fallback }, { refresh = false } = {}) {
    const mine = ++loads;
    const button = refreshButton(select);
    if (button) {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
    }
    const result = await fetchModels(refresh ? withRefresh(url) : url);
    if (button && mine === loads) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
    if (mine !== loads) return;
    const data = result.data || {};
    const defaultModel = data.default || fallback;
    let models = modelsOf(data);
    if (!models.length && defaultModel) models = [{ id: defaultModel }];
    const ids = models.map((m) => m.id);
    const selected = [preferred, storedModel(), defaultModel].find((id) => id && ids.includes(id)) || ids[0];
    select.replaceChildren(
      ...models.map((model) => {
        const option = document.createElement("option");
        option.value = model.id;
        option.textContent = optionText(model);
        option.title = optionTitle(model);
        option.dataset.tools = String(Boolean(model.tools)); // the Tools control's hint (tool_cards.js)
        option.selected = model.id === selected;
        return option;
      }),
    );
    select.title = select.selectedOptions.length ? select.selectedOptions[0].title : "";
    problem.textContent = result.problem || "";
    problem.hidden = !result.problem;
  }

  function refreshButton(select) {
    const picker = select.closest(".model-picker");
    return picker ? picker.querySelector(".model-refresh") : null;
  }

  function start(select) {
    if (started.has(select)) return;
    started.add(select);
    select.addEventListener("change", () => {
      select.title = select.selectedOptions.length ? select.selectedOptions[0].title : "";
      try {
        localStorage.setItem(STORAGE_KEY, select.value);
      } catch (err) {
        /* private mode: the choice lasts for this page only */
      }
    });
    const button = refreshButton(select);
    if (button) {
      button.addEventListener("click", () => {
        if (last) load({ ...last, preferred: last.select.value || last.preferred }, { refresh: true });
      });
    }
  }

  // options: { select, problem, url (/api/models, with ?key_id= for a key), preferred,
  // fallback }. Called again when the key changes; the refresh button repeats the latest.
  window.loadModelPicker = function (options) {
    start(options.select);
    last = options;
    return load(options);
  };
})();
