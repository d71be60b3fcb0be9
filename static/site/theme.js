// The theme switch in the top bar: follow the system, light or dark. The choice applies at
// once (data-theme on <html>, which the colours of static/site/site.css follow, and the
// stylesheets that exist in a light and a dark version) and is kept with the person's
// preferences (POST /preferences/theme/), so that every page, in any browser they sign in
// from, comes with it from the server: no flash of the other theme.
(function () {
  "use strict";

  const form = document.getElementById("theme-form");
  const select = document.getElementById("theme-select");
  if (!form || !select) return;
  form.classList.add("is-live");
  let saving = null; // the latest save: only its failure is told

  // Stylesheets with a light and a dark version (highlighted code): the one for the theme
  // applies; "system" leaves it to the media query it was written with.
  function applyTheme(theme) {
    const root = document.documentElement;
    root.dataset.theme = theme;
    const scheme = document.querySelector('meta[name="color-scheme"]');
    if (scheme) scheme.content = theme === "system" ? "light dark" : theme;
    for (const link of document.querySelectorAll("link[data-theme-media]")) {
      const own = link.dataset.themeMedia; // "light" or "dark"
      link.media = theme === "system" ? `(prefers-color-scheme: ${own})` : theme === own ? "all" : "not all";
    }
  }

  async function saveTheme(theme) {
    const body = new FormData(form);
    body.set("theme", theme);
    const mine = (saving = fetch(form.action, {
      method: "POST",
      body,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    }));
    try {
      const response = await mine;
      if (!response.ok && mine === saving) select.title = gettext("The theme could not be saved; it applies to this page only.");
    } catch (err) {
      if (mine === saving) select.title = gettext("The theme could not be saved; it applies to this page only.");
    }
  }

  select.addEventListener("change", () => {
    applyTheme(select.value);
    saveTheme(select.value);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    applyTheme(select.value);
    saveTheme(select.value);
  });

  window.YiTheme = { apply: applyTheme };
})();
