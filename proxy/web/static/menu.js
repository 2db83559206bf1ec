// Filters the database list as the patron types; the form works without this script too.
(function () {
  var input = document.getElementById("q");
  if (!input) return;
  var items = Array.prototype.slice.call(document.querySelectorAll("ul.databases li"));
  input.addEventListener("input", function () {
    var q = input.value.trim().toLowerCase();
    items.forEach(function (li) { li.hidden = q !== "" && li.getAttribute("data-title").indexOf(q) === -1; });
    document.querySelectorAll("main section").forEach(function (s) {
      s.hidden = s.querySelectorAll("li:not([hidden])").length === 0;
    });
  });
})();
