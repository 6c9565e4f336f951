/* The audit page: labelled sample pictures that open large in a dialog, and the latent map
   (colour by subgroup, class, draw rate or an attribute; hover or arrow keys preview a sample; a dragged
   box or a legend entry selects samples and filters the grid below it). No network: the map's data is
   in the page (#map-data), its pictures come from this site. */
(function () {
  "use strict";

  var GRID_PAGE = 48;             // thumbnails added to the grid per "Show more"
  var NO_VALUE = "#9ca3af";       // points without a value of the attribute shown
  var CLASS_COLORS = { positive: "#0072B2", negative: "#E69F00" };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* ---------------------------------------------------------------- the sample dialog */
  var dialog = document.getElementById("sample-dialog");
  var opener = null;

  function openSample(src, alt, details) {
    if (!dialog) return;
    var title = dialog.querySelector("#sample-dialog-title");
    var figure = dialog.querySelector("[data-dialog-figure]");
    var list = dialog.querySelector("[data-dialog-details]");
    var rows = [];
    try { rows = JSON.parse(details || "[]"); } catch (e) { rows = []; }
    var index = rows.length ? rows[0][1] : "";
    title.textContent = "Sample " + index;
    figure.replaceChildren(el("img", { src: src, alt: alt, width: "256", height: "256" }));
    list.replaceChildren();
    rows.forEach(function (r) { list.appendChild(el("dt", {}, r[0])); list.appendChild(el("dd", {}, r[1])); });
    opener = document.activeElement;
    if (typeof dialog.showModal === "function") dialog.showModal(); else dialog.setAttribute("open", "");
    dialog.querySelector("[data-dialog-close]").focus();
  }

  if (dialog) {
    dialog.querySelector("[data-dialog-close]").addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () {
      dialog.querySelector("[data-dialog-figure]").replaceChildren();  // no empty image left on the page
      if (opener && opener.focus) opener.focus();
    });
    dialog.addEventListener("click", function (ev) { if (ev.target === dialog) dialog.close(); });  // the backdrop
  }

  document.addEventListener("click", function (ev) {
    var button = ev.target.closest && ev.target.closest("[data-open-sample]");
    if (!button) return;
    var img = button.querySelector("img");
    openSample(img.getAttribute("src"), img.getAttribute("alt"), button.getAttribute("data-details"));
  });

  /* ---------------------------------------------------------------- the latent map */
  var section = document.querySelector("[data-map-section]");
  var blob = document.getElementById("map-data");
  if (!section || !blob) return;
  var data = JSON.parse(blob.textContent);
  var points = data.points;
  points.forEach(compose);
  var svg = section.querySelector("svg[data-map]");
  var marks = Array.prototype.slice.call(svg.querySelectorAll("[data-k]"));
  var box = svg.querySelector(".map-box");
  var colorSelect = section.querySelector("[data-map-color]");
  var legend = section.querySelector("[data-map-legend]");
  var status = section.querySelector("[data-map-status]");
  var preview = section.querySelector("[data-map-preview]");
  var grid = section.querySelector("[data-map-grid]");
  var gridStatus = section.querySelector("[data-map-grid-status]");
  var more = section.querySelector("[data-map-more]");
  var selected = null;            // null: nothing selected; else an array of point numbers
  var selectionLabel = "";
  var shown = 0;
  var active = -1;                // the point the keyboard is on

  /* A point's alt text, caption and dialog rows from its parts: audit_view.compose, in JavaScript. */
  function compose(p) {
    var attrs = Object.keys(p.a).map(function (k) { return [k, p.a[k]]; });
    var what = [p.l].concat(p.g === null ? [] : ["subgroup " + p.g])
      .concat(attrs.map(function (kv) { return kv[0] + "=" + kv[1]; }));
    p.src = data.src.replace("{i}", String(p.i));
    p.alt = "sample " + p.i + ": " + what.join(", ") + "; " + p.drawn + "; anomaly score " + p.an
      + (p.review ? "; review decision " + p.review : "");
    p.cap = "#" + p.i + " · " + what.join(" · ") + " · drawn " + p.short;
    p.d = [["Sample", String(p.i)], ["Class", p.l], ["Subgroup", p.g === null ? "n/a" : String(p.g)]]
      .concat(attrs, [["Drawn", p.drawn]], data.score_rows.map(function (row, j) { return [row, p.s[j]]; }));
  }

  function category(p, mode) {
    if (mode === "subgroup") return p.g === null ? null : String(p.g);
    if (mode === "class") return p.l;
    if (mode.indexOf("attr:") === 0) {
      var v = p.a[mode.slice(5)];
      return v === undefined ? null : String(v);
    }
    return null;
  }

  function weightColor(ratio) {
    if (ratio === null || ratio === undefined) return NO_VALUE;
    var t = Math.max(-1, Math.min(1, Math.log(ratio) / Math.log(4)));    // 1/4x .. 4x
    var a = Math.abs(t);
    var to = t < 0 ? [37, 99, 235] : [220, 38, 38];                       // blue: drawn less; red: drawn more
    var rgb = [229, 231, 235].map(function (c, i) { return Math.round(c + (to[i] - c) * a); });
    return "rgb(" + rgb.join(",") + ")";
  }

  function categories(mode) {
    var seen = {};
    points.forEach(function (p) {
      var c = category(p, mode);
      if (c !== null) seen[c] = (seen[c] || 0) + 1;
    });
    var keys = Object.keys(seen);
    keys.sort(function (x, y) { return mode === "subgroup" ? Number(x) - Number(y) : (x < y ? -1 : x > y ? 1 : 0); });
    return keys.map(function (k, i) {
      var color = mode === "class" ? CLASS_COLORS[k] || data.palette[i % data.palette.length]
        : data.palette[(mode === "subgroup" ? Number(k) : i) % data.palette.length];
      return { key: k, n: seen[k], color: color };
    });
  }

  function colorBy(mode) {
    var legendItems = [];
    legend.replaceChildren();
    if (mode === "weight") {
      marks.forEach(function (m) { m.setAttribute("fill", weightColor(points[+m.dataset.k].w)); });
      [["≤ 0.25×", 0.25], ["1× (average)", 1], ["≥ 4×", 4]].forEach(function (s) {
        var li = el("li");
        var sw = el("span", { class: "swatch" });
        sw.style.background = weightColor(s[1]);
        li.appendChild(sw);
        li.appendChild(document.createTextNode("drawn " + s[0]));
        legend.appendChild(li);
      });
      return;
    }
    var cats = categories(mode);
    var colorOf = {};
    cats.forEach(function (c) { colorOf[c.key] = c.color; });
    marks.forEach(function (m) {
      var c = category(points[+m.dataset.k], mode);
      m.setAttribute("fill", c === null ? NO_VALUE : colorOf[c]);
    });
    var label = mode === "subgroup" ? "subgroup " : mode === "class" ? "" : mode.slice(5) + "=";
    cats.forEach(function (c) {
      var li = el("li");
      var b = el("button", { type: "button", "aria-pressed": "false", "data-legend-key": c.key });
      var sw = el("span", { class: "swatch" });
      sw.style.background = c.color;
      b.appendChild(sw);
      b.appendChild(document.createTextNode(label + c.key + " (" + c.n + ")"));
      b.addEventListener("click", function () { selectCategory(mode, c.key, label + c.key); });
      b.setAttribute("aria-label", "select " + label + c.key + ", " + c.n + " samples");
      li.appendChild(b);
      legend.appendChild(li);
      legendItems.push(b);
    });
  }

  function applySelection(list, label, legendKey) {
    selected = list;
    selectionLabel = label;
    var inSel = {};
    (list || []).forEach(function (k) { inSel[k] = true; });
    marks.forEach(function (m) { m.classList.toggle("dim", list !== null && !inSel[m.dataset.k]); });
    legend.querySelectorAll("[data-legend-key]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(legendKey !== undefined && b.dataset.legendKey === legendKey));
    });
    status.textContent = list === null ? "No selection: the grid shows every drawn sample, most under-represented first."
      : list.length + " samples selected (" + label + "); the grid shows them.";
    renderGrid(true);
    offerReview(list, label);
  }

  /* The review form under the grid marks exactly the selected (drawn) samples, by index. */
  var reviewForm = section.querySelector("[data-map-review]");
  function offerReview(list, label) {
    if (!reviewForm) return;
    reviewForm.hidden = !list || !list.length;
    if (reviewForm.hidden) return;
    reviewForm.dataset.selection = JSON.stringify({ indices: list.map(function (k) { return points[k].i; }) });
    reviewForm.querySelector("[data-map-review-label]").textContent =
      "Mark the " + list.length + " selected samples (" + label + ")";
    reviewForm.querySelector("[data-review-status]").textContent = "";
  }

  function selectCategory(mode, key, label) {
    var list = [];
    points.forEach(function (p, k) { if (category(p, mode) === String(key)) list.push(k); });
    applySelection(list, label, String(key));
  }

  function order(list) {  // most under-represented first, then by sample index
    return list.slice().sort(function (x, y) {
      return (points[y].u || 0) - (points[x].u || 0) || points[x].i - points[y].i;
    });
  }

  function thumb(p) {
    var li = el("li");
    var fig = el("figure");
    var b = el("button", { type: "button", class: "thumb-open", "data-open-sample": "", "data-index": String(p.i),
                           "data-details": JSON.stringify(p.d), "aria-haspopup": "dialog" });
    b.appendChild(el("img", { src: p.src, alt: p.alt, width: "64", height: "64", decoding: "async" }));
    b.appendChild(el("span", { class: "visually-hidden" }, " (open large)"));
    fig.appendChild(b);
    fig.appendChild(el("figcaption", {}, p.cap));
    li.appendChild(fig);
    return li;
  }

  var sorted = null;
  function renderGrid(reset) {
    var list = selected === null ? (sorted = sorted || order(points.map(function (_, k) { return k; })))
      : order(selected);
    if (reset) { grid.replaceChildren(); shown = 0; }
    var end = Math.min(list.length, shown + GRID_PAGE);
    for (var j = shown; j < end; j++) grid.appendChild(thumb(points[list[j]]));
    shown = end;
    gridStatus.textContent = "Showing " + shown + " of " + list.length + " samples"
      + (selected === null ? " on the map (none selected)" : " selected: " + selectionLabel) + ".";
    more.hidden = shown >= list.length;
  }
  more.addEventListener("click", function () {
    var first = shown;
    renderGrid(false);
    var next = grid.children[first] && grid.children[first].querySelector("button");
    if (next) next.focus();  // keyboard users continue where the new thumbnails start
  });

  /* hover and keyboard preview */
  function showPreview(k) {
    var p = points[k];
    if (!p) return;
    preview.replaceChildren(el("img", { src: p.src, alt: p.alt, width: "128", height: "128" }),
                            el("p", { class: "small" }, p.cap));
    marks.forEach(function (m) { m.classList.toggle("active", +m.dataset.k === k); });
  }
  svg.addEventListener("mouseover", function (ev) {
    var m = ev.target.closest("[data-k]");
    if (m) showPreview(+m.dataset.k);
  });

  // Mark centres in SVG units, from their attributes (circles: cx, cy; squares: x, y + half the side).
  var xy = marks.map(function (m) {
    return m.tagName === "circle" ? [+m.getAttribute("cx"), +m.getAttribute("cy")]
      : [+m.getAttribute("x") + 3, +m.getAttribute("y") + 3];
  });
  var markOf = {};
  marks.forEach(function (m, j) { markOf[m.dataset.k] = j; });
  var byX = marks.map(function (m) { return +m.dataset.k; });
  byX.sort(function (a, b) { return xy[markOf[a]][0] - xy[markOf[b]][0]; });
  var byY = byX.slice().sort(function (a, b) { return xy[markOf[a]][1] - xy[markOf[b]][1]; });
  var KEYS = { ArrowRight: [byX, 1], ArrowLeft: [byX, -1], ArrowDown: [byY, 1], ArrowUp: [byY, -1] };
  svg.setAttribute("tabindex", "0");
  svg.addEventListener("keydown", function (ev) {
    var move = KEYS[ev.key];
    if (move) {                               // left/right through the marks by x, up/down by y
      ev.preventDefault();
      var seq = move[0];
      var pos = active < 0 ? (move[1] > 0 ? -1 : seq.length) : seq.indexOf(active);
      active = seq[Math.max(0, Math.min(seq.length - 1, pos + move[1]))];
      showPreview(active);
    } else if (ev.key === "Enter" && active >= 0) {
      ev.preventDefault();
      openSample(points[active].src, points[active].alt, JSON.stringify(points[active].d));
    }
  });

  /* box selection */
  var start = null;
  function svgPoint(ev) {
    var pt = svg.createSVGPoint();
    pt.x = ev.clientX; pt.y = ev.clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse());
  }
  svg.addEventListener("pointerdown", function (ev) {
    if (ev.button !== 0) return;
    start = svgPoint(ev);
    svg.setPointerCapture(ev.pointerId);
    ev.preventDefault();
  });
  svg.addEventListener("pointermove", function (ev) {
    if (!start) return;
    var p = svgPoint(ev);
    box.setAttribute("x", Math.min(start.x, p.x)); box.setAttribute("y", Math.min(start.y, p.y));
    box.setAttribute("width", Math.abs(p.x - start.x)); box.setAttribute("height", Math.abs(p.y - start.y));
    box.removeAttribute("hidden");
  });
  svg.addEventListener("pointerup", function (ev) {
    if (!start) return;
    var p = svgPoint(ev);
    var x0 = Math.min(start.x, p.x), x1 = Math.max(start.x, p.x), y0 = Math.min(start.y, p.y), y1 = Math.max(start.y, p.y);
    start = null;
    box.setAttribute("hidden", "");
    if (x1 - x0 < 3 && y1 - y0 < 3) {         // a click, not a drag: open the mark under it
      var m = ev.target.closest && ev.target.closest("[data-k]");
      if (m) openSample(points[+m.dataset.k].src, points[+m.dataset.k].alt, JSON.stringify(points[+m.dataset.k].d));
      return;
    }
    var list = [];
    marks.forEach(function (m, j) {
      var c = xy[j];
      if (c[0] >= x0 && c[0] <= x1 && c[1] >= y0 && c[1] <= y1) list.push(+m.dataset.k);
    });
    applySelection(list, "box on the map");
  });

  colorSelect.addEventListener("change", function () { colorBy(colorSelect.value); applySelection(null, ""); });
  section.querySelector("[data-map-clear]").addEventListener("click", function () { applySelection(null, ""); });
  document.querySelectorAll("[data-map-select]").forEach(function (b) {
    b.addEventListener("click", function () {
      colorSelect.value = b.dataset.mapSelect;
      colorBy(b.dataset.mapSelect);
      selectCategory(b.dataset.mapSelect, b.dataset.mapValue, b.dataset.mapSelect + " " + b.dataset.mapValue);
      section.scrollIntoView();
      svg.focus();
    });
  });

  colorBy("subgroup");
  applySelection(null, "");
})();
