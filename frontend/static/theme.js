// Loaded (blocking) in <head>: picks the theme before the first paint, so nothing flashes.
// ?theme=light|dark; the default is dark on the big screen and follows the system elsewhere.
(function () {
  var root = document.documentElement;
  var asked = new URLSearchParams(location.search).get("theme");
  var fallback = root.getAttribute("data-theme-default") || "dark";
  var theme = asked === "light" || asked === "dark" ? asked : fallback;
  if (theme === "system") {
    theme = window.matchMedia && window.matchMedia("(prefers-color-scheme: light)").matches ? "light" : "dark";
  }
  root.setAttribute("data-theme", theme);
})();
