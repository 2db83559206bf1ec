// The database menu's two helpers; the page works without them.
// 1. Filters the list as the patron types (the form filters on the server without JavaScript).
// 2. Warns before the session's idle time-out and lets the patron extend it (WCAG 2.2.1).
(function () {
  "use strict";

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (m, k) { return k in values ? values[k] : m; });
  }

  var input = document.getElementById("q");
  var count = document.getElementById("count");
  var noMatch = document.getElementById("no-match");
  if (input && count && noMatch) {
    var items = Array.prototype.slice.call(document.querySelectorAll("#databases li[data-text]"));
    var sections = Array.prototype.slice.call(document.querySelectorAll("#databases section"));
    var letters = Array.prototype.slice.call(document.querySelectorAll(".az li[data-letter]"));
    var pending = 0;
    var filter = function () {
      var q = input.value.trim().toLowerCase();
      var shown = 0;
      items.forEach(function (li) {
        li.hidden = q !== "" && li.getAttribute("data-text").indexOf(q) === -1;
        if (!li.hidden) shown += 1;
      });
      var visible = {};
      sections.forEach(function (s) {
        s.hidden = s.querySelectorAll("li[data-text]:not([hidden])").length === 0;
        visible[s.getAttribute("data-letter")] = !s.hidden;
      });
      letters.forEach(function (li) { li.hidden = !visible[li.getAttribute("data-letter")]; });
      noMatch.hidden = shown !== 0;
      noMatch.textContent = fill(noMatch.getAttribute("data-template"), { q: input.value.trim() });
      // Announce the count once typing pauses, not on every key.
      clearTimeout(pending);
      pending = setTimeout(function () {
        count.textContent = fill(count.getAttribute("data-template"), {
          shown: shown, total: count.getAttribute("data-total")
        });
      }, 400);
    };
    input.addEventListener("input", filter);
  }

  var box = document.getElementById("timeout");
  if (!box || !window.fetch) return;
  var warnS = Number(box.getAttribute("data-warn-s"));
  var extendButton = document.getElementById("timeout-extend");
  var text = document.getElementById("timeout-text");
  var finalText = document.getElementById("timeout-final");
  var ended = document.getElementById("timeout-ended");
  var ok = document.getElementById("timeout-ok");
  var checkTimer = 0;
  var endTimer = 0;
  var before = null;

  function schedule(leftS) {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(check, Math.max(1, leftS - warnS) * 1000);
  }
  function showEnded() {
    clearTimeout(checkTimer);
    clearTimeout(endTimer);
    box.hidden = false;
    text.hidden = true;
    finalText.hidden = true;
    extendButton.hidden = true;
    ended.hidden = false;
  }
  function warn(state) {
    text.hidden = !state.extendable;
    finalText.hidden = state.extendable;
    extendButton.hidden = !state.extendable;
    ended.hidden = true;
    box.hidden = false;
    if (state.extendable && box.hidden === false && document.activeElement !== extendButton) {
      before = document.activeElement;
      extendButton.focus();
    }
    clearTimeout(endTimer);
    endTimer = setTimeout(showEnded, state.left_s * 1000);
  }
  function ask(method) {
    var options = { method: method, credentials: "same-origin", cache: "no-store", headers: {} };
    if (method === "POST") options.headers["X-CSRF-Token"] = box.getAttribute("data-csrf");
    return fetch("/session", options).then(function (r) {
      if (!r.ok && r.status !== 401) throw new Error("session check failed");
      return r.json();
    });
  }
  // The patron may have been busy in a database in another tab: ask before warning.
  function check() {
    ask("GET").then(function (state) {
      if (!state.signed_in) showEnded();
      else if (state.left_s > warnS + 5) schedule(state.left_s);
      else warn(state);
    }, function () { schedule(warnS + 30); });
  }
  extendButton.addEventListener("click", function () {
    ask("POST").then(function (state) {
      if (!state.signed_in) { showEnded(); return; }
      clearTimeout(endTimer);
      box.hidden = true;
      ok.textContent = ok.getAttribute("data-text");
      // Put the patron back where they were before the warning took the focus.
      var back = before && before !== document.body ? before : document.getElementById("main");
      if (back) back.focus();
      schedule(state.left_s);
    }, showEnded);
  });
  schedule(Number(box.getAttribute("data-left-s")));
})();
