/* runlog viewer: the run page and the runs list, for `runlog report` and
 * `runlog serve`. Plain JavaScript, no build step, no network but the page's
 * own server. Every value from a run is put in the page as text
 * (textContent, createTextNode, SVG text), never as HTML, and every link is a
 * same-origin relative URL (see #18). */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var LEVELS = ["debug", "info", "warning", "error", "critical"];
  var LEVEL_NUMBERS = {
    debug: 10, info: 20, warning: 30, warn: 30, error: 40,
    exception: 40, critical: 50, fatal: 50
  };
  var PAGE_SIZE = 200;
  var REPORT_BATCH = 500;

  // -- building the page ---------------------------------------------------

  function setAttrs(node, attrs) {
    if (!attrs) return node;
    Object.keys(attrs).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "href") value = safeHref(value);
      node.setAttribute(key, String(value));
    });
    return node;
  }

  function append(node, children) {
    if (!Array.isArray(children)) children = [children];
    children.forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      if (Array.isArray(child)) { append(node, child); return; }
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function el(tag, attrs) {
    var node = setAttrs(document.createElement(tag), attrs);
    return append(node, Array.prototype.slice.call(arguments, 2));
  }

  function svg(tag, attrs) {
    var node = setAttrs(document.createElementNS(SVG_NS, tag), attrs);
    return append(node, Array.prototype.slice.call(arguments, 2));
  }

  function safeHref(value) {
    // same-origin relative links only: "/runs/...", never "//host" or "javascript:"
    var text = String(value);
    if (text.charAt(0) === "/" && text.charAt(1) !== "/" && text.charAt(1) !== "\\") return text;
    if (text.charAt(0) === "#") return text;
    return "#";
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  // -- text ------------------------------------------------------------------

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return (Math.round(seconds * 10) / 10) + " s";
    var s = Math.round(seconds);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + r + "s";
  }

  function fmtNumber(value) {
    if (value === null || value === undefined) return "—";
    return Number(value).toLocaleString("en-US");
  }

  function plural(count, word) {
    return fmtNumber(count) + " " + word + (count === 1 ? "" : "s");
  }

  function fmtTime(ts) {
    if (!ts) return "—";
    return String(ts).replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  // the log table's time column: time of day to the millisecond (UTC)
  function fmtClock(ts) {
    var m = /T(\d\d:\d\d:\d\d)(\.\d{1,3})?/.exec(String(ts || ""));
    if (!m) return fmtTime(ts);
    return m[1] + (m[2] || ".000").padEnd(4, "0");
  }

  function valueText(value) {
    if (typeof value === "string") return value;
    try { return JSON.stringify(value); } catch (e) { return String(value); }
  }

  function levelNumber(level) {
    var n = LEVEL_NUMBERS[String(level).toLowerCase()];
    return n === undefined ? 20 : n;
  }

  function stepName(n) {
    return "step_" + String(n).padStart(3, "0");
  }

  function statusBadge(status) {
    var text = String(status || "unknown");
    return el("span", { "class": "status st-" + cssWord(text) }, text.toUpperCase());
  }

  function cssWord(text) {
    return String(text).toLowerCase().replace(/[^a-z]/g, "") || "unknown";
  }

  // -- records -----------------------------------------------------------------

  // A row is [ts, level, step, component, event, logger, file, line, extra]
  // with indexes into the block's string table (runlog/web/_model.py).
  function decodeRows(block, run) {
    var strings = block.strings;
    return block.rows.map(function (row) {
      var extra = row[8] || {};
      var pick = function (index, key) {
        return index >= 0 ? strings[index] : (key in extra ? extra[key] : null);
      };
      var rec = {
        ts: row[0], level: pick(row[1], "level"), step: row[2],
        component: pick(row[3], "component"), event: pick(row[4], "event"),
        logger: pick(row[5], "logger"), file: pick(row[6], "_file"), line: row[7]
      };
      if (rec.step === null && "step" in extra) rec.step = extra.step;
      var full = {
        ts: rec.ts, level: rec.level, event: rec.event, logger: rec.logger,
        component: rec.component, run_id: run.run_id, framework: run.framework,
        step: rec.step
      };
      Object.keys(extra).forEach(function (key) {
        if (key !== "_file") full[key] = extra[key];
      });
      rec.record = full;
      rec.key = rec.file + ":" + rec.line;
      rec.where = rec.file ? rec.file + ":" + rec.line : "";
      rec.levelNumber = levelNumber(rec.level);
      return rec;
    });
  }

  function fieldsText(rec) {
    var skip = { ts: 1, level: 1, event: 1, logger: 1, component: 1, run_id: 1,
      framework: 1, step: 1, exception: 1 };
    return Object.keys(rec.record).filter(function (k) { return !skip[k]; })
      .map(function (k) { return k + "=" + valueText(rec.record[k]); }).join(" ");
  }

  function searchText(rec) {
    if (rec.search === undefined) {
      var exc = rec.record.exception;
      rec.search = (rec.ts + " " + rec.level + " [" + rec.component + "] step=" + rec.step +
        " " + valueText(rec.event) + " " + fieldsText(rec) +
        (typeof exc === "string" ? "\n" + exc : "")).toLowerCase();
    }
    return rec.search;
  }

  function matches(rec, filters) {
    if (filters.step !== "" && String(rec.step) !== filters.step) return false;
    if (filters.component !== "" && rec.component !== filters.component) return false;
    if (filters.level !== "" && rec.levelNumber < LEVEL_NUMBERS[filters.level]) return false;
    if (filters.q !== "" && searchText(rec).indexOf(filters.q.toLowerCase()) < 0) return false;
    return true;
  }

  // Records held in the page (the report): filtered here.
  function LocalRecords(block, run, omitted) {
    this.all = decodeRows(block, run);
    this.omitted = omitted;
    this.matched = [];
    this.shown = 0;
  }
  LocalRecords.prototype.reset = function (filters) {
    this.matched = this.all.filter(function (rec) { return matches(rec, filters); });
    this.shown = 0;
    return Promise.resolve();
  };
  LocalRecords.prototype.more = function () {
    var batch = this.matched.slice(this.shown, this.shown + REPORT_BATCH);
    this.shown += batch.length;
    return Promise.resolve(batch);
  };
  LocalRecords.prototype.hasMore = function () { return this.shown < this.matched.length; };
  LocalRecords.prototype.countText = function () {
    return fmtNumber(this.matched.length) + " of " + fmtNumber(this.all.length) + " records";
  };

  // Records read page by page from the server (serve): never all at once.
  function RemoteRecords(url, run, total) {
    this.url = url;
    this.run = run;
    this.total = total;
    this.filters = null;
    this.offset = 0;
    this.matchedCount = 0;
    this.exact = true;
    this.done = false;
    this.seen = {};
    this.generation = 0;
  }
  RemoteRecords.prototype.reset = function (filters) {
    this.filters = filters;
    this.offset = 0;
    this.done = false;
    this.seen = {};
    this.generation += 1;
    return Promise.resolve();
  };
  RemoteRecords.prototype.more = function () {
    var self = this, generation = this.generation, f = this.filters;
    var query = "?offset=" + this.offset + "&limit=" + PAGE_SIZE +
      "&step=" + encodeURIComponent(f.step) + "&component=" + encodeURIComponent(f.component) +
      "&level=" + encodeURIComponent(f.level) + "&q=" + encodeURIComponent(f.q);
    return getJSON(this.url + query).then(function (page) {
      if (generation !== self.generation) return [];
      var rows = decodeRows(page, self.run).filter(function (rec) {
        if (self.seen[rec.key]) return false;
        self.seen[rec.key] = true;
        return true;
      });
      self.offset += page.rows.length;
      self.matchedCount = page.matched;
      self.exact = page.exact;
      self.total = page.total;
      self.done = page.rows.length < PAGE_SIZE;
      return rows;
    });
  };
  RemoteRecords.prototype.hasMore = function () { return !this.done; };
  RemoteRecords.prototype.countText = function () {
    return fmtNumber(this.matchedCount) + (this.exact ? "" : "+") + " of " +
      (this.total === null || this.total === undefined ? "…" : fmtNumber(this.total)) + " records";
  };
  // The run's record count, known once the full overview is.
  RemoteRecords.prototype.counted = function (total) {
    this.total = total;
    var f = this.filters;
    if (f && !f.step && !f.component && !f.level && !f.q) {
      this.matchedCount = total;
      this.exact = true;
    }
  };
  // A record that arrived live: true when the table should show it now.
  RemoteRecords.prototype.arrived = function (rec) {
    if (this.total !== null && this.total !== undefined) this.total += 1;
    if (this.seen[rec.key]) return false;
    if (!matches(rec, this.filters)) return false;
    this.matchedCount += 1;
    if (!this.done) return false; // it is on a page not loaded yet
    this.seen[rec.key] = true;
    this.offset += 1;
    return true;
  };

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(url + ": HTTP " + response.status);
        return response.json();
      });
  }

  // -- the run page ------------------------------------------------------------

  function RunView(root, overview, records, mode) {
    this.root = root;
    this.overview = overview;
    this.records = records;
    this.mode = mode;
    this.filters = { step: "", component: "", level: "", q: "" };
    this.tooltip = el("div", { "class": "tooltip", "data-testid": "tooltip", role: "tooltip", hidden: "hidden" });
    this.selected = null;
  }

  RunView.prototype.render = function () {
    var run = this.overview.run;
    var root = clear(this.root);
    setAttrs(root, { "data-testid": "run-view", "data-run-id": run.run_id, "data-status": run.status });
    root.className = "run-view";
    this.header = el("header", { "class": "run-header", "data-testid": "run-header" });
    this.timelineBox = el("section", { "class": "panel", "aria-labelledby": "h-timeline" });
    this.chartsBox = el("section", { "class": "panel", "aria-labelledby": "h-charts" });
    this.problemsBox = el("section", { "class": "panel", "aria-labelledby": "h-problems" });
    this.recordsBox = el("section", { "class": "panel", "aria-labelledby": "h-records" });
    append(root, [this.header, this.timelineBox, this.chartsBox, this.problemsBox,
      this.recordsBox, this.tooltip]);
    this.renderOverview();
    return this.renderRecords();
  };

  RunView.prototype.renderOverview = function () {
    var run = this.overview.run;
    this.root.setAttribute("data-status", run.status);
    if (this.controls) this.addOptions();
    this.renderHeader();
    this.renderTimeline();
    this.renderCharts();
    this.renderProblems();
  };

  // The full overview arrived after the head: draw what the head left out.
  RunView.prototype.complete = function (overview) {
    var before = JSON.stringify(this.overview.attempts);
    overview.links = overview.links || this.overview.links;
    this.overview = overview;
    this.root.setAttribute("data-status", overview.run.status);
    if (this.controls) this.addOptions();
    this.renderHeader();
    // redrawn only when it changed: a bar under the pointer stays put
    if (JSON.stringify(overview.attempts) !== before) this.renderTimeline();
    this.renderCharts();
    this.renderProblems();
    if (this.records.counted) this.records.counted(overview.records_total);
    if (this.count) this.updateCount();
  };

  RunView.prototype.renderHeader = function () {
    var run = this.overview.run, ov = this.overview;
    var facts = el("dl", { "class": "facts" });
    var fact = function (name, value) {
      // one grid item per pair, so a value stays under its label (see #18)
      append(facts, el("div", { "class": "fact" }, el("dt", null, name), el("dd", null, value)));
    };
    fact("Status", statusBadge(run.status));
    fact("Started", fmtTime(run.started_at));
    fact("Duration", fmtDuration(run.duration_s));
    fact("Steps", String(ov.steps.length));
    var totals = { llm: 0, api: 0, prompt: 0, completion: 0 };
    ov.steps.concat([ov.run_level]).forEach(function (s) {
      totals.llm += s.llm_requests; totals.api += s.api_calls;
      totals.prompt += s.prompt_tokens; totals.completion += s.completion_tokens;
    });
    var counted = ov.complete !== false;
    var count = function (value) { return counted ? fmtNumber(value) : "…"; };
    fact("LLM requests", count(totals.llm));
    fact("API calls", count(totals.api));
    fact("Tokens", counted ? fmtNumber(totals.prompt) + " prompt / " + fmtNumber(totals.completion) +
      " completion" : "…");
    fact("Records", count(ov.records_total));
    if (run.host) fact("Host", run.host);
    Object.keys(run.metadata || {}).sort().forEach(function (key) {
      fact(key, valueText(run.metadata[key]));
    });
    var nav = el("nav", { "class": "links" });
    if (this.mode === "serve") {
      append(nav, [el("a", { href: "/" }, "← all runs"), " ",
        el("a", { href: ov.links.report, download: run.run_id + ".report.html",
          "data-testid": "download-report" }, "download report")]);
    }
    var failure = null;
    if (run.first_failure) {
      var f = run.first_failure;
      failure = el("p", { "class": "first-failure", "data-testid": "first-failure" },
        el("strong", null, "First failure: "),
        f.step !== null && f.step !== undefined ? "step " + f.step + (f.attempt ? " attempt " + f.attempt : "") +
          (f.name ? " (" + f.name + ")" : "") + ": " : "",
        f.error || "(no message)");
    }
    var live = run.status === "running" && this.mode === "serve" ?
      el("span", { "class": "live", "data-testid": "live" }, "● live") : null;
    append(clear(this.header), [
      nav,
      el("h1", null, run.framework + " / " + run.run_id, " ", live),
      facts, failure,
      ov.malformed ? el("p", { "class": "note" }, fmtNumber(ov.malformed) + " malformed line(s) skipped") : null
    ]);
  };

  // The step timeline: one row per step, one bar per attempt.
  RunView.prototype.renderTimeline = function () {
    var self = this, ov = this.overview;
    var bars = ov.attempts;
    var box = clear(this.timelineBox);
    append(box, el("h2", { id: "h-timeline" }, "Timeline"));
    if (!bars.length) {
      append(box, [el("p", { "class": "empty" }, "No step_start/step_end records: no steps to show."),
        svg("svg", { "data-testid": "timeline", "class": "timeline", width: 1, height: 1 })]);
      return;
    }
    var t0 = Date.parse(ov.run.started_at || ov.first_ts);
    var tEnd = Date.parse(ov.last_ts || ov.run.started_at);
    // a running attempt lasts until now (this browser's clock)
    if (ov.run.status === "running") tEnd = Math.max(tEnd, Date.now());
    var spans = bars.map(function (bar) {
      var end = bar.end ? Date.parse(bar.end) : tEnd;
      var start = bar.start ? Date.parse(bar.start) :
        (bar.duration_s !== null ? end - bar.duration_s * 1000 : end);
      return { bar: bar, start: start, end: Math.max(end, start) };
    });
    spans.forEach(function (s) {
      if (!isFinite(t0) || s.start < t0) t0 = s.start;
      if (!isFinite(tEnd) || s.end > tEnd) tEnd = s.end;
    });
    var stepsSeen = [];
    bars.forEach(function (b) { if (stepsSeen.indexOf(b.step) < 0) stepsSeen.push(b.step); });
    stepsSeen.sort(function (a, b) { return a - b; });
    var names = {};
    ov.steps.forEach(function (s) { names[s.step] = s.name; });
    var labelW = 220, width = 1000, rowH = 26, top = 24;
    var plotW = width - labelW - 20;
    var span = Math.max(tEnd - t0, 1);
    var x = function (t) { return labelW + ((t - t0) / span) * plotW; };
    var height = top + stepsSeen.length * rowH + 8;
    var chart = svg("svg", {
      "data-testid": "timeline", "class": "timeline", viewBox: "0 0 " + width + " " + height,
      width: "100%", role: "img", "aria-label": "Step timeline: one bar per attempt"
    });
    for (var i = 0; i <= 4; i++) {
      var tx = labelW + (plotW * i) / 4;
      append(chart, [svg("line", { x1: tx, x2: tx, y1: top - 6, y2: height - 4, "class": "grid" }),
        svg("text", { x: tx, y: 14, "class": "axis", "text-anchor": i === 0 ? "start" : (i === 4 ? "end" : "middle") },
          "+" + fmtDuration((span * i) / 4000))]);
    }
    stepsSeen.forEach(function (step, row) {
      var y = top + row * rowH;
      var label = "Step " + step + (names[step] ? ": " + names[step] : "");
      append(chart, svg("text", { x: 4, y: y + rowH / 2 + 4, "class": "label" },
        label.length > 30 ? label.slice(0, 29) + "…" : label));
    });
    // attempts of one step never cover each other: a bar starts after the
    // previous attempt's, so a 3 px minimum bar stays hoverable (see #18)
    var nextX = {};
    spans.forEach(function (s) {
      var bar = s.bar;
      var row = stepsSeen.indexOf(bar.step);
      var y = top + row * rowH + 4;
      var x0 = x(s.start), w = Math.max(x(s.end) - x0, 3);
      if (nextX[bar.step] !== undefined && x0 < nextX[bar.step]) {
        w = Math.max(w - (nextX[bar.step] - x0), 3);
        x0 = nextX[bar.step];
      }
      nextX[bar.step] = x0 + w + 1;
      var rect = svg("rect", {
        "data-testid": "attempt-bar", "data-step": bar.step, "data-attempt": bar.attempt,
        "data-status": bar.status, "data-name": bar.name || "", tabindex: 0,
        "class": "bar st-" + cssWord(bar.status), x: x0, y: y, width: w, height: rowH - 8, rx: 3,
        "aria-label": "step " + bar.step + " attempt " + bar.attempt + ": " + bar.status
      });
      var show = function (event) { self.showTooltip(event, bar, s); };
      rect.addEventListener("mouseenter", show);
      rect.addEventListener("mousemove", show);
      rect.addEventListener("focus", show);
      rect.addEventListener("mouseleave", function () { self.hideTooltip(); });
      rect.addEventListener("blur", function () { self.hideTooltip(); });
      rect.addEventListener("click", function () { self.setFilter("step", String(bar.step)); });
      append(chart, rect);
      var barText = "#" + bar.attempt + " " + bar.status;
      if (w > barText.length * 7.5 + 8) {  // the label only where it fits in the bar
        append(chart, svg("text", { x: x0 + 4, y: y + (rowH - 8) / 2 + 1, "class": "bar-text" }, barText));
      }
    });
    var legend = el("p", { "class": "legend" });
    ["success", "failed", "retried", "running", "interrupted", "incomplete"].forEach(function (st) {
      append(legend, [el("span", { "class": "swatch st-" + st }), st, " "]);
    });
    append(box, [chart, legend]);
  };

  RunView.prototype.showTooltip = function (event, bar, span) {
    var tip = this.tooltip;
    var duration = bar.duration_s !== null && bar.duration_s !== undefined ?
      bar.duration_s : (span.end - span.start) / 1000;
    append(clear(tip), [
      el("strong", { "data-field": "name" }, "Step " + bar.step + (bar.name ? ": " + bar.name : "")),
      el("div", null, "attempt " + bar.attempt + " · " + bar.status),
      el("div", { "data-field": "duration" }, "duration " + fmtDuration(duration)),
      bar.error ? el("div", { "class": "tip-error", "data-field": "error" }, bar.error) : null
    ]);
    tip.hidden = false;
    var box = this.root.getBoundingClientRect();
    var px, py;
    if (event && event.clientX !== undefined && event.type !== "focus") {
      px = event.clientX; py = event.clientY;
    } else {
      var r = event.target.getBoundingClientRect();
      px = r.left + r.width / 2; py = r.bottom;
    }
    tip.style.left = Math.max(0, px - box.left + 12) + "px";
    tip.style.top = (py - box.top + 12) + "px";
  };

  RunView.prototype.hideTooltip = function () { this.tooltip.hidden = true; };

  // Per-step bar charts: LLM requests, API calls, tokens (prompt + completion).
  RunView.prototype.renderCharts = function () {
    var steps = this.overview.steps;
    var box = clear(this.chartsBox);
    append(box, el("h2", { id: "h-charts" }, "Per step"));
    if (this.overview.complete === false) {
      append(box, el("p", { "class": "note loading", "data-testid": "charts-loading" },
        "Counting the run's records…"));
      return;
    }
    var grid = el("div", { "class": "charts" });
    append(grid, [
      barChart("chart-llm", "LLM requests", steps, [["llm_requests", "llm", "LLM requests"]]),
      barChart("chart-api", "API calls", steps, [["api_calls", "api", "API calls"]]),
      barChart("chart-tokens", "Tokens (prompt / completion)", steps,
        [["prompt_tokens", "prompt", "prompt"], ["completion_tokens", "completion", "completion"]])
    ]);
    append(box, grid);
  };

  function barChart(testid, title, steps, series) {
    var width = 460, height = 180, left = 48, bottom = 22, top = 10;
    var plotW = width - left - 8, plotH = height - top - bottom;
    var max = 0;
    steps.forEach(function (s) {
      var sum = 0;
      series.forEach(function (ser) { sum += s[ser[0]] || 0; });
      max = Math.max(max, sum);
    });
    var chart = svg("svg", {
      "data-testid": testid, "class": "chart", viewBox: "0 0 " + width + " " + height,
      role: "img", "aria-label": title + " per step"
    });
    append(chart, [svg("line", { x1: left, x2: width - 8, y1: top + plotH, y2: top + plotH, "class": "grid" }),
      svg("text", { x: left - 4, y: top + 8, "class": "axis", "text-anchor": "end" }, fmtNumber(max)),
      svg("text", { x: left - 4, y: top + plotH, "class": "axis", "text-anchor": "end" }, "0")]);
    var slot = steps.length ? plotW / steps.length : plotW;
    var barW = Math.max(Math.min(slot * 0.7, 40), 1);
    steps.forEach(function (s, i) {
      var x = left + i * slot + (slot - barW) / 2;
      var base = top + plotH;
      var parts = [];
      series.forEach(function (ser) {
        var value = s[ser[0]] || 0;
        var h = max ? (value / max) * plotH : 0;
        base -= h;
        parts.push(ser[2] + " " + fmtNumber(value));
        append(chart, svg("rect", {
          x: x, y: base, width: barW, height: Math.max(h, 0), "class": "cbar c-" + ser[1],
          "data-step": s.step, "data-value": value
        }, svg("title", null, "Step " + s.step + ": " + ser[2] + " " + fmtNumber(value))));
      });
      if (steps.length <= 40 || i % Math.ceil(steps.length / 40) === 0) {
        append(chart, svg("text", { x: x + barW / 2, y: height - 6, "class": "axis", "text-anchor": "middle" },
          String(s.step)));
      }
    });
    var legend = series.length > 1 ? el("p", { "class": "legend" }, series.map(function (ser) {
      return [el("span", { "class": "swatch c-" + ser[1] }), ser[2], " "];
    })) : null;
    return el("figure", { "class": "chart-box" }, el("figcaption", null, title), chart, legend);
  }

  RunView.prototype.renderProblems = function () {
    var ov = this.overview, self = this;
    var box = clear(this.problemsBox);
    if (ov.complete === false) {
      append(box, [el("h2", { id: "h-problems" }, "Errors and warnings"),
        el("p", { "class": "note loading", "data-testid": "problems-loading" }, "Looking for warnings and errors…")]);
      return;
    }
    var list = el("ul", { "class": "problems", "data-testid": "problems" });
    ov.problems.forEach(function (p) {
      var item = el("li", { "class": "problem lv-" + cssWord(p.level), "data-testid": "problem",
        "data-level": p.level, "data-step": p.step === null ? "" : p.step },
        el("span", { "class": "level lv-" + cssWord(p.level) }, String(p.level).toUpperCase()), " ",
        el("span", { "class": "ts" }, fmtTime(p.ts)), " ",
        p.step !== null && p.step !== undefined ? el("span", { "class": "tag" }, "step " + p.step) : null, " ",
        el("span", { "class": "tag" }, valueText(p.component)), " ",
        el("span", { "class": "text" }, p.text), " ",
        el("span", { "class": "where" }, p.source));
      if (p.exception) {
        append(item, el("details", null, el("summary", null, "traceback"),
          el("pre", { "class": "traceback" }, p.exception)));
      }
      list.appendChild(item);
    });
    var errors = 0, warnings = 0;
    ov.steps.concat([ov.run_level]).forEach(function (s) { errors += s.errors; warnings += s.warnings; });
    append(box, [el("h2", { id: "h-problems" }, "Errors and warnings (" + plural(errors, "error") +
      ", " + plural(warnings, "warning") + ")")]);
    if (!ov.problems.length) append(box, el("p", { "class": "empty" }, "No warnings or errors."));
    append(box, list);
    if (ov.problems_total > ov.problems.length) {
      append(box, el("p", { "class": "note" }, "The first " + fmtNumber(ov.problems.length) + " of " +
        fmtNumber(ov.problems_total) + " are listed; filter the log table by level for the rest."));
    }
    void self;
  };

  RunView.prototype.renderRecords = function () {
    var self = this, ov = this.overview;
    var box = clear(this.recordsBox);
    var option = function (value, text) { return el("option", { value: value }, text); };
    var stepSelect = el("select", { "data-testid": "filter-step", "aria-label": "step" },
      option("", "all steps"), ov.steps.map(function (s) {
        return option(String(s.step), "step " + s.step + (s.name ? ": " + s.name : ""));
      }));
    var componentSelect = el("select", { "data-testid": "filter-component", "aria-label": "component" },
      option("", "all components"), ov.components.map(function (c) { return option(c, c); }));
    var levelSelect = el("select", { "data-testid": "filter-level", "aria-label": "level and above" },
      option("", "all levels"), LEVELS.map(function (l) { return option(l, l + (l === "critical" ? "" : " and above")); }));
    var text = el("input", { type: "search", "data-testid": "filter-text", placeholder: "search text",
      "aria-label": "search text" });
    this.controls = { step: stepSelect, component: componentSelect, level: levelSelect, q: text };
    this.count = el("span", { "class": "count", "data-testid": "records-count", "aria-live": "polite" });
    var changed = function () { self.applyFilters(); };
    [stepSelect, componentSelect, levelSelect].forEach(function (s) { s.addEventListener("change", changed); });
    var timer = null;
    text.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(changed, 200);
    });
    this.tbody = el("tbody");
    this.table = el("table", { "class": "records", "data-testid": "records" },
      el("thead", null, el("tr", null, el("th", null, "time"), el("th", null, "level"),
        el("th", null, "step"), el("th", null, "component"), el("th", null, "event"),
        el("th", null, "fields"))), this.tbody);
    this.sentinel = el("div", { "class": "sentinel" });
    this.moreButton = el("button", { type: "button", "class": "more" }, "load more");
    this.moreButton.addEventListener("click", function () { self.loadMore(); });
    this.detail = el("aside", { "class": "record-detail", "data-testid": "record-detail", hidden: "hidden" });
    append(box, [el("h2", { id: "h-records" }, "Log records"),
      el("div", { "class": "filters" }, stepSelect, componentSelect, levelSelect, text, this.count)]);
    if (this.records.omitted) {
      append(box, el("p", { "class": "cap-note", "data-testid": "records-cap-note" },
        fmtNumber(this.records.omitted) + " records not included — use runlog show/serve " +
        "to see every record (this report keeps warnings, errors and lifecycle records, " +
        "and the first " + fmtNumber(this.overview.max_records || 0) + " others)."));
    }
    append(box, [el("div", { "class": "table-wrap" }, this.table), this.detail, this.sentinel, this.moreButton]);
    if (window.IntersectionObserver) {
      new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) self.loadMore();
      }, { rootMargin: "400px" }).observe(this.sentinel);
    }
    return this.applyFilters();
  };

  // Steps and components that appeared since the filters were made (live runs).
  RunView.prototype.addOptions = function () {
    var add = function (select, value, text) {
      var known = Array.prototype.some.call(select.options, function (o) { return o.value === value; });
      if (!known) select.appendChild(el("option", { value: value }, text));
    };
    var c = this.controls;
    this.overview.steps.forEach(function (s) {
      add(c.step, String(s.step), "step " + s.step + (s.name ? ": " + s.name : ""));
    });
    this.overview.components.forEach(function (name) { add(c.component, name, name); });
  };

  RunView.prototype.setFilter = function (name, value) {
    this.controls[name].value = value;
    this.applyFilters();
    this.recordsBox.scrollIntoView({ behavior: "smooth", block: "start" });
  };

  RunView.prototype.applyFilters = function () {
    var c = this.controls;
    this.filters = { step: c.step.value, component: c.component.value, level: c.level.value,
      q: c.q.value.trim() };
    clear(this.tbody);
    this.detail.hidden = true;
    this.loading = null;
    return this.records.reset(this.filters).then(this.loadMore.bind(this, true));
  };

  RunView.prototype.loadMore = function (force) {
    var self = this;
    if (this.loading && !force) return this.loading;
    if (!force && !this.records.hasMore()) return Promise.resolve();
    var tbody = this.tbody;
    this.loading = this.records.more().then(function (rows) {
      if (tbody !== self.tbody) return;
      var fragment = document.createDocumentFragment();
      rows.forEach(function (rec) { fragment.appendChild(self.row(rec)); });
      tbody.appendChild(fragment);
      self.updateCount();
      self.loading = null;
    });
    return this.loading;
  };

  RunView.prototype.updateCount = function () {
    this.count.textContent = this.records.countText();
    this.moreButton.hidden = !this.records.hasMore();
  };

  RunView.prototype.row = function (rec) {
    var self = this;
    var tr = el("tr", { "class": "lv-" + cssWord(rec.level), "data-testid": "record-row",
      "data-level": rec.level, "data-step": rec.step === null ? "" : rec.step,
      "data-component": rec.component, tabindex: 0 },
      el("td", { "class": "ts", title: String(rec.ts || "") }, fmtClock(rec.ts)),
      el("td", null, el("span", { "class": "level lv-" + cssWord(rec.level) }, valueText(rec.level))),
      el("td", null, rec.step === null ? "" : String(rec.step)),
      el("td", null, valueText(rec.component)),
      el("td", { "class": "event" }, valueText(rec.event)),
      el("td", { "class": "fields" }, fieldsText(rec).slice(0, 300)));
    var open = function () { self.showDetail(rec, tr); };
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", function (e) { if (e.key === "Enter") open(); });
    return tr;
  };

  RunView.prototype.showDetail = function (rec, tr) {
    if (this.selected) this.selected.classList.remove("selected");
    this.selected = tr;
    tr.classList.add("selected");
    var list = el("dl", null);
    Object.keys(rec.record).forEach(function (key) {
      var value = rec.record[key];
      var text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
      append(list, [el("dt", null, key), el("dd", { "data-field": key },
        /\n/.test(text) || text.length > 120 ? el("pre", null, text) : text)]);
    });
    var close = el("button", { type: "button", "class": "close", "aria-label": "close" }, "×");
    var detail = this.detail;
    close.addEventListener("click", function () { detail.hidden = true; });
    append(clear(detail), [close, el("h3", null, "Record", rec.where ? " · " + rec.where : ""), list]);
    detail.hidden = false;
  };

  // -- live runs (serve) -----------------------------------------------------

  RunView.prototype.follow = function (api) {
    var self = this;
    if (!window.EventSource || this.overview.run.status !== "running") return;
    var url = this.overview.links.events + "?from=" + encodeURIComponent(JSON.stringify(this.overview.ends || {}));
    var source = new EventSource(url);
    var refreshing = null;
    var refresh = function () {
      if (refreshing) return;
      refreshing = getJSON(api).then(function (overview) {
        refreshing = null;
        self.overview = overview;
        self.renderOverview();
        if (self.records.counted && self.records.total === null) self.records.counted(overview.records_total);
      }, function () { refreshing = null; });
    };
    source.addEventListener("records", function (event) {
      var rows = decodeRows(JSON.parse(event.data), self.overview.run);
      var fragment = document.createDocumentFragment();
      rows.forEach(function (rec) {
        if (self.records.arrived(rec)) fragment.appendChild(self.row(rec));
      });
      self.tbody.appendChild(fragment);
      self.updateCount();
    });
    source.addEventListener("overview", refresh);
    source.addEventListener("end", function () {
      source.close();
      refresh();
    });
  };

  // -- the runs list (serve) ---------------------------------------------------

  function renderRuns(root, data) {
    var runs = data.runs;
    clear(root);
    root.className = "runs-view";
    root.setAttribute("data-testid", "runs-view");
    var text = el("input", { type: "search", "data-testid": "runs-filter", placeholder: "filter runs",
      "aria-label": "filter runs" });
    var statuses = [], frameworks = [];
    runs.forEach(function (r) {
      if (statuses.indexOf(r.status) < 0) statuses.push(r.status);
      if (frameworks.indexOf(r.framework) < 0) frameworks.push(r.framework);
    });
    var status = el("select", { "data-testid": "runs-filter-status", "aria-label": "status" },
      el("option", { value: "" }, "all statuses"),
      statuses.sort().map(function (s) { return el("option", { value: s }, s); }));
    var framework = el("select", { "data-testid": "runs-filter-framework", "aria-label": "framework" },
      el("option", { value: "" }, "all frameworks"),
      frameworks.sort().map(function (f) { return el("option", { value: f }, f); }));
    var tbody = el("tbody");
    var count = el("span", { "class": "count", "data-testid": "runs-count" });
    var rows = runs.map(function (r) {
      var name = r.href ? el("a", { href: r.href }, r.run_id) : r.run_id;
      var tr = el("tr", { "data-testid": "run-row", "data-run-id": r.run_id, "data-status": r.status,
        "data-framework": r.framework },
        el("td", null, statusBadge(r.status)), el("td", null, r.framework), el("td", null, name),
        el("td", { "class": "ts" }, fmtTime(r.started_at)), el("td", null, fmtDuration(r.duration_s)),
        el("td", { "class": "num" }, fmtNumber(r.steps)),
        el("td", { "class": "num" }, r.errors === null ? "?" : fmtNumber(r.errors)),
        el("td", { "class": "num" }, r.warnings === null ? "?" : fmtNumber(r.warnings)));
      tr.searchText = (r.framework + " " + r.run_id + " " + r.status).toLowerCase();
      tr.run = r;
      tbody.appendChild(tr);
      return tr;
    });
    var apply = function () {
      var q = text.value.trim().toLowerCase(), shown = 0;
      rows.forEach(function (tr) {
        var ok = (!q || tr.searchText.indexOf(q) >= 0) && (!status.value || tr.run.status === status.value) &&
          (!framework.value || tr.run.framework === framework.value);
        tr.hidden = !ok;
        if (ok) shown += 1;
      });
      count.textContent = shown + " of " + rows.length + " runs";
    };
    [text, status, framework].forEach(function (c) {
      c.addEventListener("input", apply);
      c.addEventListener("change", apply);
    });
    append(root, [
      el("header", { "class": "run-header" }, el("h1", null, "runlog runs"),
        el("p", { "class": "note" }, data.runs_dir)),
      el("div", { "class": "filters" }, text, status, framework, count),
      el("div", { "class": "table-wrap" }, el("table", { "class": "records runs", "data-testid": "runs" },
        el("thead", null, el("tr", null, ["status", "framework", "run", "started", "duration", "steps",
          "errors", "warnings"].map(function (h) { return el("th", null, h); }))), tbody)),
      runs.length ? null : el("p", { "class": "empty" }, "No runs here yet (try `runlog demo`).")
    ]);
    apply();
  }

  // -- start -------------------------------------------------------------------

  function fail(root, error) {
    append(clear(root), el("p", { "class": "error", role: "alert" }, "Could not load: " + String(error)));
    document.body.dataset.ready = "error";
  }

  function start() {
    var body = document.body;
    var page = body.getAttribute("data-page");
    var root = el("main", { id: "runlog" });
    body.appendChild(root);
    var ready = function () { body.dataset.ready = "1"; };
    var complete = function () { body.dataset.complete = "1"; };
    if (page === "report") {
      var data = JSON.parse(document.getElementById("runlog-data").textContent);
      var overview = data.overview;
      overview.max_records = data.max_records;
      var view = new RunView(root, overview,
        new LocalRecords(data.records, overview.run, data.omitted), "report");
      view.render().then(function () { ready(); complete(); }, function (e) { fail(root, e); });
    } else if (page === "run") {
      var api = safeHref(body.getAttribute("data-api"));
      // the head (run.json, attempts) and the first records page draw first;
      // counts, charts and problems follow when the server has them (see #18)
      var live = null;
      getJSON(api + "?part=head").then(function (ov) {
        var remote = new RemoteRecords(safeHref(ov.links.records), ov.run, ov.records_total);
        live = new RunView(root, ov, remote, "serve");
        return live.render().then(function () { live.follow(api); });
      }).then(function () {
        ready();
        if (live.overview.complete !== false) return complete();
        return getJSON(api).then(function (full) { live.complete(full); complete(); });
      }).catch(function (e) { fail(root, e); });
    } else if (page === "runs") {
      getJSON(safeHref(body.getAttribute("data-api")))
        .then(function (data) { renderRuns(root, data); })
        .then(ready, function (e) { fail(root, e); });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
