// The model <select>: filled from /api/models. When the server cannot list the models it
// answers 502 with a sentence and (maybe) a reference list; the sentence is shown beside
// the picker and the default model is still offered, so chatting never depends on it.
(function () {
  "use strict";

  const STORAGE_KEY = "yiweb.model";

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
      if (!response.ok || !data) return { data, problem: `The model list could not be loaded (HTTP ${response.status}).` };
      return { data, problem: null };
    } catch (err) {
      return { data: null, problem: "The model list could not be loaded: the server did not answer." };
    }
  }

  // preferred: the conversation's model, if any; then the last one picked here; then
  // the server's default.
  async function loadModelPicker({ select, problem, url, preferred, fallback }) {
    const result = await fetchModels(url);
    const data = result.data || {};
    const defaultModel = data.default || fallback;
    let ids = Array.isArray(data.models) ? data.models.map((m) => (typeof m === "string" ? m : m && m.id)) : [];
    ids = ids.filter(Boolean);
    if (!ids.length && defaultModel) ids = [defaultModel];
    const selected = [preferred, storedModel(), defaultModel].find((id) => id && ids.includes(id)) || ids[0];
    select.replaceChildren(
      ...ids.map((id) => {
        const option = document.createElement("option");
        option.value = id;
        option.textContent = id;
        option.selected = id === selected;
        return option;
      }),
    );
    problem.textContent = result.problem || "";
    problem.hidden = !result.problem;
  }

  function rememberModel(select) {
    select.addEventListener("change", () => {
      try {
        localStorage.setItem(STORAGE_KEY, select.value);
      } catch (err) {
        /* private mode: the choice lasts for this page only */
      }
    });
  }

  window.loadModelPicker = function (options) {
    rememberModel(options.select);
    return loadModelPicker(options);
  };
})();
