// On a page that answers the sign-in form's post: put the sign-in form's own address in the
// browser's history in place of that post, so Back and Reload at a shared computer open the form
// instead of sending the last patron's card number and PIN again (proxy/web/pages.py, _again).
(function () {
  var again = document.currentScript && document.currentScript.getAttribute("data-again");
  if (again && window.history && history.replaceState) history.replaceState(null, "", again);
})();
