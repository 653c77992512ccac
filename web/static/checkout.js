// The cashier page's live part: Pay, then poll the status endpoint and switch screens
// without reloading. Everything it needs comes from the page's #checkout-config.
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("checkout-config").textContent);
  var L = cfg.labels;
  var POLL_MS = 1500;
  var SCREENS = ["choose", "pending", "succeeded", "failed", "cancelled", "expired"];
  var SUCCESS = ["succeeded", "partially_refunded", "refunded"];
  var state = { status: cfg.status, deadline: Date.now() + cfg.seconds_left * 1000,
                paying: false, qrShown: false, done: false, timer: null };
  // Set once per page load: a test can tell an update in place from a reload.
  window.checkoutPageId = Math.random().toString(36).slice(2);

  function $(id) { return document.getElementById(id); }

  function show(screen) {
    SCREENS.forEach(function (name) { $("screen-" + name).hidden = name !== screen; });
    document.body.dataset.screen = screen;
    var live = screen === "choose" || screen === "pending";
    $("time-left-row").hidden = !live;
  }

  function screenFor(status) {
    if (SUCCESS.indexOf(status) >= 0) return "succeeded";
    if (status === "init") return state.paying ? "pending" : "choose";
    if (status === "processing") return "pending";
    return status; // failed, cancelled, expired
  }

  function error(text) {
    $("error").textContent = text || "";
    $("error").hidden = !text;
  }

  function render(view) {
    state.status = view.status;
    state.deadline = Date.now() + view.seconds_left * 1000;
    var status = $("status");
    status.textContent = L["status_" + view.status] || view.status;
    status.dataset.status = view.status;
    if (view.method && cfg.method_labels[view.method]) {
      $("method-name").textContent = cfg.method_labels[view.method];
    }
    if (view.pay_url) {
      $("pay-link").href = view.pay_url;
      $("pay-link").hidden = false;
      $("pending-message").textContent = L.waiting;
    }
    if (view.has_qr && !state.qrShown) {
      state.qrShown = true;
      $("qr-image").src = cfg.urls.qr;
      $("qr-image").hidden = false;
      $("scan-hint").hidden = false;
    }
    $("retry-button").hidden = !view.can_retry;
    $("no-retry").hidden = view.can_retry;
    var screen = screenFor(view.status);
    show(screen);
    if (screen === "succeeded" || screen === "cancelled" || screen === "expired") stop();
  }

  function expired() {
    state.status = "expired";
    $("status").textContent = L.status_expired;
    $("status").dataset.status = "expired";
    show("expired");
    stop();
  }

  function stop() {
    state.done = true;
    if (state.timer) clearInterval(state.timer);
  }

  function readJson(response) {
    return response.text().then(function (text) {
      var body = {};
      try { body = text ? JSON.parse(text) : {}; } catch (e) { body = {}; }
      return { status: response.status, body: body };
    });
  }

  function poll() {
    if (state.done) return;
    fetch(cfg.urls.status, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(readJson)
      .then(function (r) {
        if (r.status === 404) { expired(); return; } // the link died with the payment
        if (r.status === 200) render(r.body);
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }

  function tick() {
    var left = Math.max(0, Math.round((state.deadline - Date.now()) / 1000));
    var mm = Math.floor(left / 60), ss = left % 60;
    $("time-left").textContent = mm + ":" + (ss < 10 ? "0" : "") + ss;
    if (left === 0 && (state.status === "init" || state.status === "processing")) expired();
  }

  function post(url, body) {
    return fetch(url, { method: "POST", cache: "no-store",
                        headers: { "Content-Type": "application/json", Accept: "application/json" },
                        body: JSON.stringify(body || {}) }).then(readJson);
  }

  $("pay-button").addEventListener("click", function () {
    var picked = document.querySelector("input[name=method]:checked");
    var button = $("pay-button");
    button.disabled = true;
    error("");
    state.paying = true;
    $("pending-message").textContent = L.paying;
    show("pending");
    post(cfg.urls.pay, picked ? { method: picked.value } : {}).then(function (r) {
      if (r.status === 202) { render(r.body); return; }
      state.paying = false;
      button.disabled = false;
      show(screenFor(state.status));
      error(r.body.detail || L.error);
      poll();
    }).catch(function () {
      state.paying = false;
      button.disabled = false;
      show(screenFor(state.status));
      error(L.error);
    });
  });

  $("retry-button").addEventListener("click", function () {
    var button = $("retry-button");
    button.disabled = true;
    error("");
    post(cfg.urls.retry).then(function (r) {
      if ((r.status === 201 || r.status === 200) && r.body.checkout_url) {
        window.location.assign(r.body.checkout_url); // the new attempt has its own link
        return;
      }
      button.disabled = false;
      if (r.status === 429) error(L.retry_wait.replace("{s}", r.body.retry_after || 30));
      else error(r.body.detail || L.error);
    }).catch(function () { button.disabled = false; error(L.error); });
  });

  render({ status: cfg.status, pay_url: cfg.pay_url, has_qr: cfg.has_qr,
           seconds_left: cfg.seconds_left, can_retry: cfg.can_retry });
  tick();
  state.timer = setInterval(function () { tick(); poll(); }, POLL_MS);
  setInterval(tick, 1000);
})();
