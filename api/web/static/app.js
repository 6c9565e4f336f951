/* debias pages: upload with progress, forms that call the JSON API, live job progress bars.
   No framework, no network beyond this site: every request goes to the app that served the page,
   authenticated by its http-only sign-in cookie. */
(function () {
  "use strict";

  var POLL_MS = 500;
  var FINISHED = { succeeded: true, failed: true, cancelled: true };

  function detailText(body, status) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail)) {  // a validation error: one line per field
      return body.detail.map(function (d) {
        return (d.loc || []).filter(function (p) { return p !== "body"; }).join(".") + ": " + d.msg;
      }).join("; ");
    }
    return "the request failed (HTTP " + status + ")";
  }

  function showError(el, text) {
    if (!el) return;
    el.textContent = text;
    el.hidden = !text;
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, k) { return values[k] === undefined ? "" : values[k]; });
  }

  /* ---------------------------------------------------------------- upload */
  function initUpload(form) {
    var input = form.querySelector("input[type=file]");
    var zone = form.querySelector("[data-dropzone]");
    var nameEl = form.querySelector("[data-file-name]");
    var box = form.querySelector(".upload-progress");
    var bar = form.querySelector("progress");
    var status = form.querySelector("[data-upload-status]");
    var error = form.querySelector("[data-upload-error]");
    var button = form.querySelector("button[type=submit]");

    function chosen() {
      var f = input.files && input.files[0];
      nameEl.textContent = f ? f.name + " (" + Math.max(1, Math.round(f.size / 1024)) + " KiB)" : "no file chosen";
    }
    input.addEventListener("change", chosen);
    ["dragenter", "dragover"].forEach(function (t) {
      zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (t) {
      zone.addEventListener(t, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        chosen();
      }
    });

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      showError(error, "");
      var file = input.files && input.files[0];
      if (!file) { showError(error, "Choose a dataset file first."); input.focus(); return; }
      var max = Number(form.dataset.maxBytes || 0);
      if (max && file.size > max) { showError(error, file.name + " is over the upload limit of " + max + " bytes."); return; }
      var data = new FormData(form);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action"));
      xhr.setRequestHeader("Accept", "application/json");
      box.hidden = false;
      bar.value = 0;
      status.textContent = "uploading…";
      button.disabled = true;
      xhr.upload.onprogress = function (ev) {
        if (!ev.lengthComputable) return;
        var p = Math.round(100 * ev.loaded / ev.total);
        bar.value = p;
        bar.textContent = p + "%";
        status.textContent = "uploading: " + p + "%";
      };
      xhr.upload.onload = function () {
        bar.value = 100;
        status.textContent = "uploaded; validating and decoding the images…";
      };
      xhr.onload = function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        if (xhr.status === 201 && body) {
          status.textContent = "done: " + body.n_samples + " samples";
          window.location.assign("/datasets/" + body.id);
          return;
        }
        button.disabled = false;
        status.textContent = "refused";
        showError(error, "The upload was refused: " + detailText(body, xhr.status));
      };
      xhr.onerror = function () {
        button.disabled = false;
        status.textContent = "failed";
        showError(error, "The upload failed: the server could not be reached.");
      };
      xhr.send(data);
    });
  }

  /* ---------------------------------------------------------------- jobs */
  function finishJob(el, job) {
    el.dataset.status = job.status;
    refreshLists();
    var group = el.closest("[data-reload-when-done]");
    if (job.status === "succeeded") {
      if (group) {
        var open = group.querySelectorAll("[data-job]:not([data-status=succeeded])");
        if (!open.length) {
          if (group.dataset.reloadUrl) window.location.assign(group.dataset.reloadUrl);
          else window.location.reload();
          return;
        }
      }
      var p = document.createElement("p");
      p.className = "job-done";
      var a = document.createElement("a");
      a.href = el.dataset.doneHref || "#";
      a.textContent = el.dataset.doneText || "done";
      p.appendChild(a);
      el.replaceWith(p);
    } else {
      var msg = document.createElement("p");
      msg.className = job.status === "failed" ? "error" : "muted";
      msg.setAttribute("role", "alert");
      msg.textContent = (el.dataset.what || "job " + job.id) + " " + job.status +
        (job.error ? ": " + job.error : job.message ? ": " + job.message : "");
      el.replaceWith(msg);
    }
  }

  function duration(seconds) {
    var s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    return m < 60 ? m + " min " + ("0" + (s % 60)).slice(-2) + " s" : Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  /* What the job is doing, in words: its place in the queue while it waits, its message while it runs. */
  function jobStatusText(job) {
    if (job.status === "queued") {
      return job.queue_position ? "queued: " + (job.queue_position === 1 ? "next to start" :
        "position " + job.queue_position + " in the queue") : "queued";
    }
    if (job.cancel_requested && job.status === "running") return "cancelling…";
    return job.status + ": " + job.message;
  }

  function jobTimeText(job) {
    var now = Date.now();
    if (job.status === "queued") return "waiting " + duration((now - Date.parse(job.created_at)) / 1000);
    if (job.started_at) return "running for " + duration((now - Date.parse(job.started_at)) / 1000);
    return "";
  }

  function initCancel(el) {
    var button = el.querySelector("[data-cancel]");
    if (!button || button.dataset.bound) return;
    button.dataset.bound = "1";
    button.addEventListener("click", function () {
      button.disabled = true;
      sendJson("POST", "/v1/jobs/" + el.dataset.job + "/cancel")
        .then(function (job) { el.querySelector(".job-message").textContent = jobStatusText(job); })
        .catch(function (err) {
          button.disabled = false;
          el.querySelector(".job-message").textContent = "Cancel refused: " + err.message;
        });
    });
  }

  function watchJob(el) {
    var id = el.dataset.job;
    var bar = el.querySelector("progress");
    var message = el.querySelector(".job-message");
    var time = el.querySelector("[data-job-time]");
    initCancel(el);
    function tick() {
      if (!el.isConnected) return;  // replaced by a refreshed list: the new widget polls
      fetch("/v1/jobs/" + id, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, status: r.status, body: b }; }); })
        .then(function (res) {
          if (!res.ok) { message.textContent = detailText(res.body, res.status); return; }
          var job = res.body;
          bar.value = job.progress;
          bar.textContent = Math.round(job.progress) + "%";
          message.textContent = jobStatusText(job);
          if (time) time.textContent = jobTimeText(job);
          if (FINISHED[job.status]) { if (el.isConnected) finishJob(el, job); return; }
          setTimeout(tick, POLL_MS);
        })
        .catch(function () { setTimeout(tick, POLL_MS * 4); });
    }
    setTimeout(tick, POLL_MS);
  }

  /* The dataset page's audits and models, re-read from the server when a job starts or ends: no reload. */
  var refreshing = null;
  function refreshLists() {
    var target = document.querySelector("[data-refresh-lists]");
    if (!target || refreshing) return;
    refreshing = fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        refreshing = null;
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-refresh-lists]");
        if (!fresh) return;
        target.innerHTML = fresh.innerHTML;
        target.querySelectorAll("[data-job]").forEach(watchJob);
        var select = document.getElementById("audit-model");
        var freshSelect = fresh.ownerDocument.getElementById("audit-model");
        if (select && freshSelect && select.options.length !== freshSelect.options.length) {
          var chosen = select.value;
          select.innerHTML = freshSelect.innerHTML;
          select.value = chosen;
        }
      })
      .catch(function () { refreshing = null; });
  }

  function jobElement(job, href, text, what) {
    var div = document.createElement("div");
    div.className = "job";
    div.dataset.job = job.id;
    div.dataset.doneHref = href;
    div.dataset.doneText = text;
    div.dataset.what = what;
    var label = document.createElement("label");
    label.htmlFor = "job-" + job.id + "-bar";
    label.textContent = what;
    var bar = document.createElement("progress");
    bar.id = "job-" + job.id + "-bar";
    bar.max = 100;
    bar.value = job.progress;
    var msg = document.createElement("span");
    msg.className = "job-message";
    msg.setAttribute("aria-live", "polite");
    msg.textContent = jobStatusText(job);
    var time = document.createElement("span");
    time.className = "job-time muted small";
    time.dataset.jobTime = "";
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "job-cancel";
    cancel.dataset.cancel = "";
    cancel.textContent = "Cancel";
    cancel.setAttribute("aria-label", "Cancel " + what);
    [label, bar, msg, time, cancel].forEach(function (c) { div.appendChild(c); });
    return div;
  }

  /* ---------------------------------------------------------------- forms calling the API */
  function formBody(form) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled || el.type === "submit" || el.type === "button") return;
      if ((el.type === "checkbox" || el.type === "radio") && !el.checked) return;
      var value = el.value;
      var type = el.dataset.type || (el.type === "number" ? "number" : "string");
      if (value === "" && type !== "array") return;
      if (type === "number") value = Number(value);
      var path = el.name.split(".");
      var target = body;
      for (var i = 0; i < path.length - 1; i++) target = target[path[i]] = target[path[i]] || {};
      var key = path[path.length - 1];
      if (type === "array") (target[key] = target[key] || []).push(value);
      else target[key] = value;
    });
    return body;
  }

  /* A form whose group_by comes from another form's ticked boxes (the compare page's "Group by"): what the
     user sees ticked is what is evaluated, and the page then shows that grouping. */
  function takeGroupBy(form) {
    var source = document.getElementById(form.dataset.groupFrom || "");
    if (!source) return;
    form.querySelectorAll("input[name=group_by]").forEach(function (el) { el.remove(); });
    source.querySelectorAll("input[name=group_by]:checked").forEach(function (box) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = "group_by";
      input.value = box.value;
      input.dataset.type = "array";
      form.appendChild(input);
    });
    var query = new URLSearchParams(new FormData(source)).toString();
    form.dataset.reloadUrl = source.getAttribute("action") + "?" + query;
  }

  /* A job named by what it makes: "DB-VAE model 3, histogram, 6 epochs", "audit 4, histogram, with DB-VAE model 3". */
  function jobName(what, body, resource, job) {
    var epochs = function (n) { return n + " epoch" + (n === 1 ? "" : "s"); };
    var training = body.training || {};
    if (what === "audit" && resource.audit_id) {
      var density = body.density || "histogram";
      return "audit " + resource.audit_id + ", " + density + (body.model_id ?
        ", with DB-VAE model " + resource.model_id :
        ", training its own DB-VAE model " + resource.model_id + " (" + epochs(training.epochs || 6) + ")");
    }
    if (resource.model_id && !resource.evaluation_id && body.method) {
      var name = body.method === "dbvae" ? "DB-VAE model " + resource.model_id + ", " + (body.density || "histogram")
        : "standard model " + resource.model_id;
      return (what === "retraining" ? "retraining: " : "") + name + ", " + epochs(body.epochs || 6);
    }
    if (resource.evaluation_id) return "evaluation " + resource.evaluation_id;
    if (resource.counterfactual_id) {
      return "counterfactual test " + resource.counterfactual_id + ": " + body.attribute + " " +
        (body.values || []).join(" \u2194 ");
    }
    return (what || "job") + " " + job.id;
  }

  function initApiForm(form) {
    var error = form.querySelector("[data-form-error]");
    var jobs = form.querySelector(".jobs");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      showError(error, "");
      if (form.dataset.groupFrom) takeGroupBy(form);
      var body = JSON.stringify(formBody(form));
      var urls = form.dataset.api.trim().split(/\s+/);
      button.disabled = true;
      Promise.all(urls.map(function (url) {
        return fetch(url, {
          method: "POST", credentials: "same-origin", body: body,
          headers: { "Content-Type": "application/json", Accept: "application/json" }
        }).then(function (r) {
          return r.json().catch(function () { return null; }).then(function (b) {
            if (!r.ok) throw new Error(detailText(b, r.status));
            return b;
          });
        });
      })).then(function (accepted) {
        accepted.forEach(function (res) {
          var href = fill(form.dataset.link || "", res.resource);
          var text = fill(form.dataset.linkText || "open", res.resource);
          var el = jobElement(res.job, href, text, jobName(form.dataset.what, JSON.parse(body), res.resource, res.job));
          jobs.appendChild(el);
          watchJob(el);
        });
        button.disabled = false;
        refreshLists();
      }).catch(function (err) {
        button.disabled = false;
        showError(error, "Refused: " + err.message);
      });
    });
  }

  /* ---------------------------------------------------------------- review decisions (audit page) */
  function sendJson(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
      headers: { "Content-Type": "application/json", Accept: "application/json" }
    }).then(function (r) {
      if (r.status === 204) return null;
      return r.json().catch(function () { return null; }).then(function (b) {
        if (!r.ok) throw new Error(detailText(b, r.status));
        return b;
      });
    });
  }

  /* One sample: the select's decision is saved with PUT (or cleared with DELETE); the row's badge and every
     thumbnail of the sample on the page show it at once, and the server renders it after a reload. */
  function initReviewForm(form) {
    var status = form.querySelector("[data-review-status]");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var decision = form.elements.decision.value;
      button.disabled = true;
      status.textContent = "saving…";
      (decision ? sendJson("PUT", form.dataset.api, { decision: decision }) : sendJson("DELETE", form.dataset.api))
        .then(function () {
          var cell = form.closest(".review-cell");
          var badge = cell && cell.querySelector("[data-review-state]");
          if (badge) {
            badge.dataset.reviewState = decision;
            badge.className = "review-badge review-" + (decision || "none");
            badge.textContent = decision || "not reviewed";
          }
          status.textContent = "saved";
          button.disabled = false;
        })
        .catch(function (err) {
          status.textContent = "";
          button.disabled = false;
          showError(status, "Refused: " + err.message);
          status.className = "small error";
        });
    });
  }

  /* A whole selection (a subgroup): one POST; the page reloads to show the new states. */
  function initReviewBulk(form) {
    var status = form.querySelector("[data-review-status]");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var selection = JSON.parse(form.dataset.selection);
      if (form.elements.only_new && form.elements.only_new.checked) selection.review = "none";
      var decision = form.elements.decision.value;
      button.disabled = true;
      status.textContent = "saving…";
      sendJson("POST", form.dataset.api, { decision: decision, selection: selection })
        .then(function (res) {
          status.textContent = "marked " + res.count + " samples " + decision;
          window.location.reload();
        })
        .catch(function (err) {
          button.disabled = false;
          status.className = "small error";
          status.textContent = "Refused: " + err.message;
        });
    });
  }

  /* Dataset page: rename in place (PATCH), delete after a confirmation (DELETE, then back to the list). */
  function initRename(form) {
    var status = form.querySelector("[data-rename-status]");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var name = form.elements.name.value;
      status.className = "small";
      status.textContent = "saving…";
      sendJson("PATCH", form.dataset.api, { name: name }).then(function (ds) {
        document.querySelectorAll("[data-dataset-name]").forEach(function (n) { n.textContent = ds.name; });
        document.title = ds.name + " · debias";
        status.textContent = "renamed";
      }).catch(function (err) {
        status.className = "small error";
        status.textContent = "Refused: " + err.message;
      });
    });
  }

  function initDelete(button) {
    button.addEventListener("click", function () {
      var status = document.querySelector("[data-delete-status]");
      if (!window.confirm(button.dataset.confirm)) return;
      button.disabled = true;
      sendJson("DELETE", button.dataset.api).then(function () {
        window.location.assign("/");
      }).catch(function (err) {
        button.disabled = false;
        if (status) { status.className = "small error"; status.textContent = "Refused: " + err.message; }
      });
    });
  }

  function init() {
    document.querySelectorAll("form.rename-form").forEach(initRename);
    document.querySelectorAll("[data-delete-dataset]").forEach(initDelete);
    document.querySelectorAll("form.review-form").forEach(initReviewForm);
    document.querySelectorAll("form.review-bulk").forEach(initReviewBulk);
    var upload = document.getElementById("upload-form");
    if (upload) initUpload(upload);
    document.querySelectorAll("form.api-form").forEach(initApiForm);
    document.querySelectorAll("[data-job]").forEach(watchJob);
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
