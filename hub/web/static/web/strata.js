/* Small enhancements; every page works without them. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Copy buttons: data-copy="text" or data-copy-target="element id".
  document.addEventListener("click", function (e) {
    var btn = e.target.closest("button.copy");
    if (!btn) return;
    var text = btn.dataset.copy;
    if (text === undefined && btn.dataset.copyTarget) {
      var el = document.getElementById(btn.dataset.copyTarget);
      text = el ? el.textContent : "";
    }
    var done = function () {
      var old = btn.textContent;
      btn.textContent = "Copied";
      btn.classList.add("is-done");
      setTimeout(function () { btn.textContent = old; btn.classList.remove("is-done"); }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
    } else {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "absolute";
      area.style.left = "-9999px";
      document.body.appendChild(area);
      area.select();
      try { document.execCommand("copy"); done(); } catch (err) { /* nothing to do */ }
      area.remove();
    }
  });

  // Selects that apply on change (their form keeps a submit button for no-JS use).
  document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Close the account menu on Escape or a click elsewhere.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (d) {
      d.open = false;
      d.querySelector("summary").focus();
    });
  });
  document.addEventListener("click", function (e) {
    document.querySelectorAll("details.menu[open]").forEach(function (d) {
      if (!d.contains(e.target)) d.open = false;
    });
  });

  // Snippet groups become tabs (without JS they are simply listed one after another).
  document.querySelectorAll("[data-tabs]").forEach(function (group) {
    var panels = Array.prototype.slice.call(group.children);
    if (panels.length < 2) return;
    var list = document.createElement("div");
    list.setAttribute("role", "tablist");
    list.className = "tablist";
    var tabs = panels.map(function (panel, i) {
      var title = panel.querySelector(".snippet-title");
      var tab = document.createElement("button");
      tab.type = "button";
      tab.id = panel.id + "-tab";
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-controls", panel.id);
      tab.textContent = title.textContent;
      title.classList.add("visually-hidden");
      panel.setAttribute("role", "tabpanel");
      panel.setAttribute("aria-labelledby", tab.id);
      list.appendChild(tab);
      tab.addEventListener("click", function () { select(i, false); });
      tab.addEventListener("keydown", function (e) {
        var next = e.key === "ArrowRight" ? i + 1 : e.key === "ArrowLeft" ? i - 1 : e.key === "Home" ? 0 : e.key === "End" ? panels.length - 1 : null;
        if (next === null) return;
        e.preventDefault();
        select((next + panels.length) % panels.length, true);
      });
      return tab;
    });
    function select(index, focus) {
      tabs.forEach(function (tab, i) {
        var on = i === index;
        tab.setAttribute("aria-selected", on ? "true" : "false");
        tab.tabIndex = on ? 0 : -1;
        panels[i].hidden = !on;
      });
      if (focus) tabs[index].focus();
    }
    group.insertBefore(list, group.firstChild);
    select(0, false);
  });

  // A job page follows its job until it ends, then reloads once to show the result.
  var live = document.querySelector("[data-job-live]");
  if (live) {
    var url = live.dataset.jobLive;
    var state = document.getElementById("job-state");
    var log = document.getElementById("job-log");
    var poll = function () {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) {
          if (!job) return setTimeout(poll, 5000);
          if (state && state.textContent !== job.state) {
            state.textContent = job.state;
            state.className = "badge badge-" + job.state;
          }
          if (log && job.log_tail && log.textContent !== job.log_tail) log.textContent = job.log_tail;
          if (["succeeded", "failed", "cancelled"].indexOf(job.state) >= 0) {
            window.location.reload();
          } else {
            setTimeout(poll, 1500);
          }
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 1500);
  }
})();
