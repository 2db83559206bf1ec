// After a failed sign-in, puts the cursor on the field at fault (or on the message when no single
// field is), also when the browser skipped `autofocus` (e.g. a page restored with Back).
(function () {
  var target = document.querySelector("[aria-invalid=true]") || document.getElementById("login-error");
  if (target && document.activeElement !== target) target.focus();
})();
