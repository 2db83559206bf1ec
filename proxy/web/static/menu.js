// The database menu's two helpers; the page works without them.
// 1. Filters the list as the patron types (the form filters on the server without JavaScript).
// 2. Warns before the session ends, with the time the server says is left, and lets the patron
//    extend it while only the idle time-out is near (WCAG 2.2.1).
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
    // As the server folds the items' data-text (pages._folded): no case, no accents.
    var fold = function (text) {
      return text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
        .replace(/\u00df/g, "ss").replace(/\u03c2/g, "\u03c3");
    };
    var filter = function () {
      var q = fold(input.value.trim());
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
  // A branding override of menu.html made before this paragraph existed may lack it.
  var unchecked = document.getElementById("timeout-unchecked") || document.createElement("p");
  // The time left, worded as the server words a duration (messages.duration, DURATION_WORDS).
  var units = JSON.parse(box.getAttribute("data-units") || "null");
  function unitWords(unit, n) {
    var forms = units[unit];
    return n === 1 ? forms[0] : fill(forms[1], { n: n });
  }
  function duration(seconds) {
    var s = Math.max(1, Math.ceil(seconds));
    if (s >= 3600 && s % 3600 === 0) return unitWords("hour", s / 3600);
    if (s >= 60 && s % 60 === 0) return unitWords("minute", s / 60);
    return unitWords("second", s);
  }
  // Set once when the warning opens, not counted down: the box is a live region, and a changing
  // text would be read out again every time it changed. The same text is not set twice either.
  function say(p, template, leftS) {
    if (!units || !template) return; // a branding override made before these attributes existed
    var words = fill(template, { duration: duration(leftS) });
    if (p.textContent !== words) p.textContent = words;
  }
  var checkTimer = 0;
  var endTimer = 0;
  var retryTimer = 0;
  var endsAt = 0;
  var before = null;

  function schedule(leftS) {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(check, Math.max(1, leftS - warnS) * 1000);
  }
  function showEnded() {
    clearTimeout(checkTimer);
    clearTimeout(endTimer);
    clearTimeout(retryTimer);
    box.hidden = false;
    text.hidden = true;
    finalText.hidden = true;
    extendButton.hidden = true;
    unchecked.hidden = true;
    ended.hidden = false;
  }
  function warn(state) {
    say(text, box.getAttribute("data-text-template"), state.left_s);
    say(finalText, box.getAttribute("data-final-template"), state.left_s);
    text.hidden = !state.extendable;
    finalText.hidden = state.extendable;
    extendButton.hidden = !state.extendable;
    unchecked.hidden = true;
    ended.hidden = true;
    box.hidden = false;
    if (state.extendable && box.hidden === false && document.activeElement !== extendButton) {
      before = document.activeElement;
      extendButton.focus();
    }
    clearTimeout(endTimer);
    endsAt = Date.now() + state.left_s * 1000;
    // At least a second: the server counts whole seconds down, and may say 0 while still alive.
    endTimer = setTimeout(expire, Math.max(1, state.left_s) * 1000);
  }
  // The warning's time is up, by this page's count: the patron may have used the session in
  // another tab meanwhile, so only the server's answer says it ended.
  function expire() {
    ask("GET").then(function (state) {
      if (!state.signed_in) showEnded();
      else if (state.left_s > warnS + 5) { hideWarning(); schedule(state.left_s); }
      else warn(state);
    }, function () {
      // Not known to have ended (the store or the network did not answer): keep the warning as
      // it is and ask again shortly.
      clearTimeout(endTimer);
      endTimer = setTimeout(expire, 5000);
    });
  }
  function hideWarning() {
    clearTimeout(endTimer);
    clearTimeout(retryTimer); // a "Stay signed in" still retrying has nothing left to do
    unchecked.hidden = true;
    box.hidden = true;
    // Put the patron back where they were before the warning took the focus.
    if (box.contains(document.activeElement) || document.activeElement === document.body) {
      var back = before && before !== document.body ? before : document.getElementById("main");
      if (back) back.focus();
    }
  }
  function ask(method) {
    var options = { method: method, credentials: "same-origin", cache: "no-store", headers: {} };
    if (method === "POST") options.headers["X-CSRF-Token"] = box.getAttribute("data-csrf");
    return fetch("/session", options).then(function (r) {
      // Only 401 says the session has ended. Anything else (503 while the session store does
      // not answer, a CSRF refusal) says nothing about it: the caller tries again.
      if (!r.ok && r.status !== 401) {
        var err = new Error("session check failed");
        err.status = r.status;
        throw err;
      }
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
  function extend() {
    clearTimeout(retryTimer);
    ask("POST").then(function (state) {
      if (!state.signed_in) { showEnded(); return; }
      ok.textContent = ok.getAttribute("data-text");
      hideWarning();
      schedule(state.left_s);
    }, function (err) {
      // A 403: this page's token is an older session's (the patron signed out and in again in
      // another tab). The menu loaded again is the session's now, with its token and time;
      // loading it is a use of the session, as the button asked.
      if (err && err.status === 403) { location.reload(); return; }
      // Not known to have ended (the store or the network did not answer): keep the warning,
      // say the session could not be checked, and try again while there is time left (not
      // after Retry-After: the warning is shorter than that).
      unchecked.hidden = false;
      var leftMs = endsAt - Date.now();
      if (leftMs <= 1000) return; // the time is up: the end check (`expire`) says what happened
      retryTimer = setTimeout(extend, Math.max(1000, Math.min(5000, leftMs / 2)));
    });
  }
  extendButton.addEventListener("click", extend);
  schedule(Number(box.getAttribute("data-left-s")));
})();
