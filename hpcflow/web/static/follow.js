// Follow a log: fetch its last lines every 2 s while data-follow is 1 (no library).
(function () {
  var pre = document.getElementById("log");
  if (!pre || pre.getAttribute("data-follow") !== "1") return;
  function tick() {
    fetch(pre.getAttribute("data-src"), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (doc) {
        if (doc) { pre.textContent = doc.lines.join("\n"); window.scrollTo(0, document.body.scrollHeight); }
      })
      .catch(function () {})
      .finally(function () { setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
})();
