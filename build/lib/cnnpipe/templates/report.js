(function () {
  "use strict";
  // Sortable, filterable tables: <table class="sortable" id=...> with <button> in sortable headers,
  // numeric cells carry their exact value in data-v; <input data-filter-for="table id"> filters rows.
  function cellKey(row, i, numeric) {
    var cell = row.cells[i];
    var v = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
    if (!numeric) return v.trim().toLowerCase();
    var f = parseFloat(v);
    return isNaN(f) ? null : f;
  }

  function sortBy(table, th, index) {
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    var keyed = rows.map(function (row, n) { return { row: row, key: cellKey(row, index, numeric), n: n }; });
    keyed.sort(function (a, b) {
      if (a.key === b.key) return a.n - b.n;
      if (a.key === null) return 1;            // missing values last in either direction
      if (b.key === null) return -1;
      return (a.key < b.key ? -1 : 1) * dir;
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (k) { frag.appendChild(k.row); });
    tbody.appendChild(frag);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  }

  function applyFilter(input) {
    var table = document.getElementById(input.getAttribute("data-filter-for"));
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      if (row._text === undefined) row._text = row.textContent.toLowerCase();
      var ok = terms.every(function (t) { return row._text.indexOf(t) !== -1; });
      row.hidden = !ok;
      if (ok) shown += 1;
    });
    var count = document.getElementById(input.getAttribute("data-filter-for") + "-count");
    if (count) count.textContent = shown + " of " + table.tBodies[0].rows.length + " rows";
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      var button = th.querySelector("button");
      if (button) button.addEventListener("click", function () { sortBy(table, th, i); });
    });
  });
  document.querySelectorAll("input[data-filter-for]").forEach(function (input) {
    input.addEventListener("input", function () { applyFilter(input); });
    applyFilter(input);
  });
})();
