/* Publish from the browser: hash files, open an upload session, PUT the bytes straight
 * to storage with progress, commit, then follow the check job until it finishes.
 *
 * REST calls use the session cookie; DRF's SessionAuthentication enforces CSRF, so
 * every unsafe request carries the X-CSRFToken header.
 */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;

  var API = "/api/v1";
  var repo = form.dataset.repo;
  var kind = form.dataset.kind;
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var rowsEl = document.getElementById("file-rows");
  var tableWrap = document.getElementById("file-table-wrap");
  var statusBox = document.getElementById("upload-status");
  var statusText = document.getElementById("status-text");
  var overall = document.getElementById("overall-progress");
  var overallPct = document.getElementById("overall-percent");
  var errorBox = document.getElementById("upload-error");
  var button = document.getElementById("upload-button");
  var files = []; // {file, path, sha256, row, bar, note}
  var busy = false;

  // --- choosing files ----------------------------------------------------------------

  function skipped(path) {
    return path.split("/").some(function (part) {
      return (part.charAt(0) === "." && part !== ".gitattributes") || part === "__pycache__";
    });
  }

  function relativePath(file) {
    var rel = file.webkitRelativePath || file.relPath || file.name;
    if (file.webkitRelativePath || file.relPath) {
      // Drop the chosen folder's own name: "my-lora/adapter_config.json" -> "adapter_config.json".
      var slash = rel.indexOf("/");
      if (slash >= 0) rel = rel.slice(slash + 1);
    }
    return rel;
  }

  function human(n) {
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  function addFiles(list) {
    var ignored = 0;
    Array.prototype.forEach.call(list, function (file) {
      var path = relativePath(file);
      if (!path || skipped(path)) { ignored++; return; }
      files = files.filter(function (f) { return f.path !== path; });
      files.push({ file: file, path: path });
    });
    files.sort(function (a, b) { return a.path < b.path ? -1 : 1; });
    render();
    if (ignored) say(ignored + " hidden file" + (ignored === 1 ? " was" : "s were") + " skipped.");
  }

  function render() {
    rowsEl.textContent = "";
    files.forEach(function (f, i) {
      var tr = document.createElement("tr");
      var name = document.createElement("td");
      name.className = "mono";
      name.textContent = f.path;
      var size = document.createElement("td");
      size.className = "num";
      size.textContent = human(f.file.size);
      var prog = document.createElement("td");
      var bar = document.createElement("progress");
      bar.max = 100; bar.value = 0;
      bar.setAttribute("aria-label", "Upload of " + f.path);
      var note = document.createElement("span");
      note.className = "file-note muted";
      note.textContent = "ready";
      prog.appendChild(bar); prog.appendChild(note);
      var rm = document.createElement("td");
      var btn = document.createElement("button");
      btn.type = "button";
      btn.className = "linkish";
      btn.textContent = "Remove";
      btn.setAttribute("aria-label", "Remove " + f.path);
      btn.addEventListener("click", function () {
        if (busy) return;
        files.splice(i, 1);
        render();
      });
      rm.appendChild(btn);
      tr.append(name, size, prog, rm);
      rowsEl.appendChild(tr);
      f.bar = bar; f.note = note;
    });
    tableWrap.hidden = files.length === 0;
  }

  ["pick-folder", "pick-files"].forEach(function (id) {
    var input = document.getElementById(id);
    input.addEventListener("change", function () { addFiles(input.files); input.value = ""; });
  });

  // Drag and drop, folders included (read through the entries API).
  var zone = document.getElementById("dropzone");
  zone.addEventListener("dragover", function (e) { e.preventDefault(); zone.classList.add("is-over"); });
  zone.addEventListener("dragleave", function () { zone.classList.remove("is-over"); });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("is-over");
    var items = e.dataTransfer.items;
    if (!items || !items.length || !items[0].webkitGetAsEntry) { addFiles(e.dataTransfer.files); return; }
    var entries = Array.prototype.map.call(items, function (it) { return it.webkitGetAsEntry(); });
    var found = [];
    Promise.all(entries.map(function (entry) { return walk(entry, found); })).then(function () {
      addFiles(found);
    });
  });

  function walk(entry, out) {
    if (!entry) return Promise.resolve();
    if (entry.isFile) {
      return new Promise(function (resolve) {
        entry.file(function (file) {
          // Keep the folder structure below the dropped folder.
          file.relPath = entry.fullPath.replace(/^\//, "");
          out.push(file);
          resolve();
        }, resolve);
      });
    }
    var reader = entry.createReader();
    return new Promise(function (resolve) {
      var all = [];
      (function next() {
        reader.readEntries(function (batch) {
          if (!batch.length) {
            Promise.all(all.map(function (c) { return walk(c, out); })).then(resolve);
            return;
          }
          all = all.concat(Array.prototype.slice.call(batch));
          next();
        }, resolve);
      })();
    });
  }

  // --- autocomplete ------------------------------------------------------------------

  function autocomplete(inputId, listId, kindName) {
    var input = document.getElementById(inputId);
    var list = document.getElementById(listId);
    if (!input || !list) return;
    var timer = null, last = null;
    function load() {
      var q = input.value.split("@")[0];
      if (q === last) return;
      last = q;
      fetch(form.dataset.completeUrl + "?kind=" + kindName + "&q=" + encodeURIComponent(q), {
        credentials: "same-origin",
        headers: { Accept: "application/json" }
      })
        .then(function (r) { return r.ok ? r.json() : { results: [] }; })
        .then(function (data) {
          list.textContent = "";
          data.results.forEach(function (item) {
            var opt = document.createElement("option");
            opt.value = item.id;
            opt.label = (item.main ? item.main + " · " : "") + (item.description || "");
            list.appendChild(opt);
          });
        })
        .catch(function () { /* autocomplete is a nicety */ });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(load, 150); });
    input.addEventListener("focus", load);
  }
  autocomplete("base-model", "base-options", "base_model");
  autocomplete("finetuned-from", "adapter-options", "adapter");

  // --- talking to the API ------------------------------------------------------------

  function say(text) { statusBox.hidden = false; statusText.textContent = text; }

  function fail(message) {
    errorBox.hidden = false;
    errorBox.textContent = message;
    busy = false;
    button.disabled = false;
    button.textContent = "Try again";
  }

  function api(method, path, body) {
    return fetch(API + path, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) {
          var err = (data && data.error) || {};
          var msg = err.message || "The hub answered " + r.status + ".";
          if (err.detail && err.detail.fields) msg += " " + JSON.stringify(err.detail.fields);
          throw new Error(msg);
        }
        return { status: r.status, data: data };
      });
    });
  }

  /** PUT a body with progress; resolves with the ETag response header (multipart parts). */
  function put(url, headers, body, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      Object.keys(headers || {}).forEach(function (k) { xhr.setRequestHeader(k, headers[k]); });
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) onProgress(e.loaded); };
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.getResponseHeader("ETag"));
        else reject(new Error("Storage refused the upload (" + xhr.status + "): " + (xhr.responseText || "").slice(0, 200)));
      };
      xhr.onerror = function () {
        reject(new Error("The upload could not reach storage. If the hub uses S3 directly, its bucket needs a CORS rule for this site (see docs/WEB.md)."));
      };
      xhr.send(body);
    });
  }

  function setOverall(done, total) {
    var pct = total ? Math.floor((100 * done) / total) : 100;
    overall.value = pct;
    overallPct.textContent = pct + "%";
  }

  function metadata() {
    var meta = {};
    var message = document.getElementById("message").value.trim();
    if (message) meta.message = message;
    var base = document.getElementById("base-model");
    if (base && base.value.trim()) meta.base_model = base.value.trim();
    var stack = document.getElementById("stacked-on");
    if (stack) {
      var refs = stack.value.split(/[\n,]+/).map(function (s) { return s.trim(); }).filter(Boolean);
      if (refs.length) meta.stacked_on = refs;
    }
    var ft = document.getElementById("finetuned-from");
    if (ft && ft.value.trim()) meta.finetuned_from = ft.value.trim();
    return meta;
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (busy) return;
    errorBox.hidden = true;
    if (!files.length) { fail("Choose a folder or files first."); return; }
    var base = document.getElementById("base-model");
    if (kind === "adapter" && base && !base.value.trim()) {
      fail("Name the base model this adapter was trained on.");
      base.focus();
      return;
    }
    busy = true;
    button.disabled = true;
    button.textContent = "Uploading…";
    run().catch(function (err) { fail(err.message || String(err)); });
  });

  async function run() {
    var totalBytes = files.reduce(function (n, f) { return n + f.file.size; }, 0);
    // 1. Hash every file (counts as the first fifth of the bar).
    var hashed = 0;
    for (var i = 0; i < files.length; i++) {
      var f = files[i];
      f.note.textContent = "hashing";
      say("Computing sha256 of " + f.path + "…");
      var before = hashed;
      f.sha256 = await StrataSha256.hashFile(f.file, function (done) {
        setOverall(0.2 * (before + done), totalBytes || 1);
      });
      hashed += f.file.size;
      f.note.textContent = "hashed";
    }
    // 2. Open the session.
    say("Starting the upload…");
    var started = await api("POST", "/repos/" + repo + "/uploads", {
      files: files.map(function (f) { return { path: f.path, size: f.file.size, sha256: f.sha256 }; })
    });
    var session = started.data;
    var byPath = {};
    files.forEach(function (f) { byPath[f.path] = f; });
    var toSend = session.files.reduce(function (n, ins) { return n + (ins.exists ? 0 : byPath[ins.path].file.size); }, 0);
    var sent = 0;
    var parts = {};
    // 3. Send the bytes straight to storage.
    for (var k = 0; k < session.files.length; k++) {
      var ins = session.files[k];
      var item = byPath[ins.path];
      if (ins.exists) {
        item.bar.value = 100;
        item.note.textContent = "already on the hub";
        continue;
      }
      item.note.textContent = "uploading";
      say("Uploading " + item.path + " (" + human(item.file.size) + ")…");
      var base = sent;
      if (ins.put) {
        await put(ins.put.url, ins.put.headers, item.file, function (loaded) {
          item.bar.value = Math.floor((100 * loaded) / (item.file.size || 1));
          setOverall(0.2 * totalBytes + 0.8 * totalBytes * ((base + loaded) / (toSend || 1)), totalBytes);
        });
      } else if (ins.multipart) {
        var size = ins.multipart.part_size;
        parts[ins.path] = [];
        for (var p = 0; p < ins.multipart.parts.length; p++) {
          var part = ins.multipart.parts[p];
          var start = (part.part_number - 1) * size;
          var blob = item.file.slice(start, Math.min(item.file.size, start + size));
          var etag = await put(part.url, {}, blob, function (loaded) {
            var doneInFile = start + loaded;
            item.bar.value = Math.floor((100 * doneInFile) / item.file.size);
            setOverall(0.2 * totalBytes + 0.8 * totalBytes * ((base + doneInFile) / (toSend || 1)), totalBytes);
          });
          if (!etag) throw new Error("Storage did not return an ETag for a part; its CORS rule must expose the ETag header (see docs/WEB.md).");
          parts[ins.path].push({ part_number: part.part_number, etag: etag });
        }
      }
      sent += item.file.size;
      item.bar.value = 100;
      item.note.textContent = "sent";
    }
    setOverall(1, 1);
    // 4. Commit: the hub checks sizes and hashes, then publishes the version.
    say("Checking the files and publishing…");
    var committed = await api("POST", "/uploads/" + session.id + "/commit", {
      parts: parts,
      metadata: metadata()
    });
    var version = null, jobs = [];
    if (committed.status === 202) {
      say("Large files are being verified on the hub…");
      var finalJob = await follow(committed.data.job.id, "Verifying files");
      if (finalJob.state !== "succeeded") throw new Error("Verification failed: " + (finalJob.error_message || finalJob.state));
      var up = await api("GET", "/uploads/" + session.id);
      var detail = await api("GET", "/repos/" + repo + "/versions/" + up.data.version);
      version = detail.data;
    } else {
      version = committed.data;
    }
    jobs = version.jobs || [];
    files.forEach(function (f) { f.note.textContent = "published"; });
    say("Published " + version.label + ".");
    button.textContent = "Published";
    showResult(version, jobs);
  }

  // --- after publishing: follow the check job -----------------------------------------

  var result = document.getElementById("result");

  function showResult(version, jobs) {
    result.hidden = false;
    var url = form.dataset.repoUrl + "/v/" + version.label;
    document.getElementById("result-text").textContent =
      repo + " " + version.label + " is published (commit " + version.commit_id.slice(0, 12) + ").";
    document.getElementById("version-link").href = url;
    document.getElementById("result-h").focus();
    var job = jobs.find(function (j) { return j.kind === "validate" || j.kind === "manifest"; }) || jobs[0];
    if (!job) return;
    document.getElementById("job-live").hidden = false;
    document.getElementById("job-kind").textContent = job.kind === "manifest" ? "Manifest" : "Validation";
    document.getElementById("job-link").href = "/jobs/" + job.id;
    follow(job.id).then(function (final) {
      if (final.state === "succeeded" && final.result && final.result.status) {
        document.getElementById("job-detail").textContent = "The version is " + final.result.status + ".";
      }
    });
  }

  function follow(jobId, label) {
    var stateEl = document.getElementById("job-state");
    var detailEl = document.getElementById("job-detail");
    return new Promise(function (resolve) {
      (function poll() {
        api("GET", "/jobs/" + jobId).then(function (r) {
          var job = r.data;
          if (!label) {
            stateEl.className = "badge badge-" + job.state;
            stateEl.textContent = job.state;
            detailEl.textContent = job.state === "failed"
              ? (job.error_code ? job.error_code + ": " : "") + (job.error_message || "")
              : job.state === "running" ? "Running on " + (job.worker_host || "a worker") + "…" : "";
          } else {
            say(label + ": " + job.state + "…");
          }
          if (job.state === "succeeded" || job.state === "failed" || job.state === "cancelled") resolve(job);
          else setTimeout(poll, 1000);
        }).catch(function () { setTimeout(poll, 3000); });
      })();
    });
  }
})();
