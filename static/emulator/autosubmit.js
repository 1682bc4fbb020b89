// Submit Apple's form_post result as soon as the page loads; the button covers no-JS browsers.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("apple-response");
  if (form) {
    HTMLFormElement.prototype.submit.call(form);
  }
});
