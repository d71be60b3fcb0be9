// The language menu (templates/_language_menu.html): picking a language sends the form at
// once, so the page comes back in it (without script, the menu's button does).
(function () {
  "use strict";
  const form = document.getElementById("language-form");
  const select = document.getElementById("language-select");
  if (!form || !select) return;
  select.addEventListener("change", () => {
    // The page may have moved on since it was served (a new chat gets its own address
    // without a reload): come back to where it is now.
    form.elements.next.value = location.pathname + location.search + location.hash;
    form.requestSubmit();
  });
})();
