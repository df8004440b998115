// Refreshes the part of the page that shows results (#live) in place, so filters, focus and
// scroll position stay; pauses while the tab is hidden. Without JavaScript the page still
// works: the filter form submits and a reload shows new results.
"use strict";
(function () {
  var live = document.getElementById("live");
  var updated = document.getElementById("updated");
  if (!live) return;
  var every = Math.max(1, Number(live.getAttribute("data-refresh")) || 5) * 1000;
  function say(text) { if (updated) updated.textContent = text; }
  function refresh() {
    if (document.hidden) { setTimeout(refresh, every); return; }
    fetch(location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        var fresh = next.getElementById("live");
        if (fresh) live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
        document.title = next.title;
        say("Updated " + new Date().toLocaleTimeString());
      })
      .catch(function (error) { say("Cannot reach the agent (" + error.message + "); retrying"); })
      .then(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
  // Choosing a filter applies it at once; the button is there for keyboards and no-script.
  var form = document.querySelector("form.filters");
  if (form) {
    Array.prototype.forEach.call(form.querySelectorAll("select"), function (select) {
      select.addEventListener("change", function () { form.submit(); });
    });
  }
})();
