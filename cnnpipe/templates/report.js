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

  function rowText(row) {  // what the filter searches: every cell but the mark buttons
    return Array.prototype.filter.call(row.cells, function (c) { return !c.classList.contains("mark"); })
      .map(function (c) { return c.textContent; }).join(" ").toLowerCase();
  }

  function applyFilter(input) {
    var table = document.getElementById(input.getAttribute("data-filter-for"));
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      if (row._text === undefined) row._text = rowText(row);
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

  // Labels: cards and ranked rows carry data-source/-key/-index; their mark buttons set a label
  // (interesting | boring; a second click clears it). The bar downloads every label as labels.csv in the
  // workflow's format (source,key,index,label): the labels the run started from (config/labels.csv, also
  // rows this page does not show) with the marks made here applied.
  var bar = document.getElementById("labelbar");
  var labels = new Map();  // id -> {source, key, index, label}, in first-seen order
  function ident(source, key, index) { return JSON.stringify([String(source), String(key), String(index)]); }
  JSON.parse(bar.getAttribute("data-labels") || "[]").forEach(function (r) {
    labels.set(ident(r[0], r[1], r[2]), { source: String(r[0]), key: String(r[1]), index: String(r[2]), label: r[3] });
  });
  var initial = new Map(Array.from(labels, function (kv) { return [kv[0], kv[1].label]; }));

  function elementId(el) {
    return ident(el.getAttribute("data-source"), el.getAttribute("data-key"), el.getAttribute("data-index"));
  }

  function show() {
    document.querySelectorAll("[data-source][data-index]").forEach(function (el) {
      var entry = labels.get(elementId(el));
      var label = entry ? entry.label : "";
      el.setAttribute("data-label", label);
      el.querySelectorAll("button[data-mark]").forEach(function (b) {
        b.setAttribute("aria-pressed", String(b.getAttribute("data-mark") === label));
      });
      var text = el.querySelector("[data-label-text]");
      if (text) {
        text.textContent = label;
        if (text.classList.contains("badge")) text.className = "badge " + label;
      }
      el._text = undefined;  // the filter's cached text
    });
    var changed = 0;
    labels.forEach(function (v, k) { if (initial.get(k) !== v.label) changed += 1; });
    initial.forEach(function (v, k) { if (!labels.has(k)) changed += 1; });
    document.getElementById("label-count").textContent = labels.size;
    document.getElementById("label-changed").textContent = changed;
  }

  document.addEventListener("click", function (ev) {
    var button = ev.target.closest ? ev.target.closest("button[data-mark]") : null;
    if (!button) return;
    var el = button.closest("[data-source][data-index]");
    var id = elementId(el), mark = button.getAttribute("data-mark");
    var entry = labels.get(id);
    if (entry && entry.label === mark) labels.delete(id);
    else labels.set(id, { source: el.getAttribute("data-source"), key: el.getAttribute("data-key"),
                          index: el.getAttribute("data-index"), label: mark });
    show();
  });

  function csvField(v) {  // RFC 4180: quote fields holding a comma, quote, line break or edge space
    v = String(v);
    return /[",\r\n]|^\s|\s$/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }

  document.getElementById("labels-download").addEventListener("click", function () {
    var lines = ["source,key,index,label"];
    labels.forEach(function (v) { lines.push([v.source, v.key, v.index, v.label].map(csvField).join(",")); });
    var url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
    var a = document.createElement("a");
    a.href = url;
    a.download = "labels.csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  });
  show();
})();
