// Progressive enhancement of the claim form. Without this script the form
// posts and the server answers with a redirect or a page; with it, the
// same POST goes through fetch so the button shows progress, cannot be
// pressed twice, and a network hiccup leaves the page usable. The server
// decides where to go next either way.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form.claim");
  if (!form || !window.fetch) return;
  form.setAttribute("data-enhanced", "");
  var button = form.querySelector("button");
  var status = document.getElementById("claim-status");
  var label = button.textContent;
  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "status error" : "status";
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = "Claiming your seat…";
    say("Claiming your seat…", false);
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { "Accept": "application/json" },
      credentials: "omit",
      cache: "no-store",
      redirect: "error"
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (r) {
      if (r.body && r.body.location) {
        window.location.assign(r.body.location);
        return;
      }
      throw new Error((r.body && r.body.message) || "The seat could not be claimed.");
    }).catch(function (err) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.textContent = label;
      say((err && err.message && err.message.indexOf("fetch") < 0 ? err.message : "We couldn't reach the server.") + " Please try again.", true);
    });
  });
});
