// The sign-in page: typing into the new-user fields ticks "New test user" (the server also
// treats filled fields as that choice); picking a known user empties them, so what is ticked
// is what Continue does.
document.addEventListener("DOMContentLoaded", function () {
  var fields = document.querySelectorAll(".fields input");
  var fresh = document.getElementById("account-new");
  if (!fresh) {
    return;
  }
  fields.forEach(function (input) {
    input.addEventListener("input", function () {
      if (input.value.trim()) {
        fresh.checked = true;
      }
    });
  });
  document.querySelectorAll('input[name="account"]').forEach(function (radio) {
    radio.addEventListener("change", function () {
      if (radio !== fresh && radio.checked) {
        fields.forEach(function (input) { input.value = ""; });
      }
    });
  });
});
