// symgrad report: sort the obligations table by a column, filter it by verdict; show the
// tape drawing fitted to the page or at actual size (then drag or scroll to pan).
(function () {
  "use strict";

  function obligationsTable(table) {
    var body = table.tBodies[0];
    var filter = document.getElementById("verdict-filter");
    var unmet = document.getElementById("unmet-filter");
    var shown = document.getElementById("shown-count");

    function apply() {
      var want = filter.value, onlyUnmet = unmet.checked, n = 0;
      Array.prototype.forEach.call(body.rows, function (row) {
        var ok = (!want || row.dataset.verdict === want) && (!onlyUnmet || row.dataset.met === "no");
        row.classList.toggle("hidden", !ok);
        if (ok) { n += 1; }
      });
      shown.textContent = n + " of " + body.rows.length + " shown";
    }
    filter.addEventListener("change", apply);
    unmet.addEventListener("change", apply);

    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("asc");
        Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var num = th.dataset.type === "num";
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].textContent.trim(), y = b.cells[col].textContent.trim();
          var r = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return asc ? r : -r;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
    apply();
  }

  function tapeZoom(button, view) {
    button.addEventListener("click", function () {
      var actual = view.classList.toggle("actual");
      button.setAttribute("aria-pressed", actual ? "true" : "false");
      button.textContent = actual ? "fit to page" : "actual size";
    });
    var drag = null;
    view.addEventListener("mousedown", function (ev) {
      if (!view.classList.contains("actual")) { return; }
      drag = {x: ev.clientX, y: ev.clientY, left: view.scrollLeft, top: view.scrollTop};
      ev.preventDefault();
    });
    window.addEventListener("mousemove", function (ev) {
      if (!drag) { return; }
      view.scrollLeft = drag.left - (ev.clientX - drag.x);
      view.scrollTop = drag.top - (ev.clientY - drag.y);
    });
    window.addEventListener("mouseup", function () { drag = null; });
  }

  var table = document.getElementById("obligations");
  if (table) { obligationsTable(table); }
  var zoom = document.getElementById("tape-zoom");
  if (zoom) { tapeZoom(zoom, document.getElementById("tape-view")); }
}());
