// Post the answer to the app as soon as the page loads; the button covers no-JS browsers.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("oauth-response");
  if (form) {
    HTMLFormElement.prototype.submit.call(form);
  }
});
