// agentfence inbox: sign answers in this browser with the approver's own Ed25519 key
// (WebCrypto). The key is imported as non-extractable and kept in IndexedDB for this site;
// it is never sent. Without an imported key the forms post as usual and the inbox signs.
"use strict";
(function () {
  var box = document.getElementById("browser-key");
  if (!box || !window.isSecureContext || !window.crypto || !crypto.subtle || !window.indexedDB) return;
  var slot = "key:" + box.dataset.account;
  // PKCS #8 for an Ed25519 private key (RFC 8410 section 7): this prefix, then the 32-byte seed.
  var PKCS8 = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
  var state = document.getElementById("key-state");
  var error = document.getElementById("sign-error");
  var forget = document.getElementById("key-forget");
  var details = document.getElementById("key-import");
  var held = null;

  function db(mode, act) {
    return new Promise(function (ok, fail) {
      var open = indexedDB.open("agentfence-inbox", 1);
      open.onupgradeneeded = function () { open.result.createObjectStore("keys"); };
      open.onerror = function () { fail(open.error); };
      open.onsuccess = function () {
        var tx = open.result.transaction("keys", mode);
        var req = act(tx.objectStore("keys"));
        tx.oncomplete = function () { ok(req.result); open.result.close(); };
        tx.onerror = function () { fail(tx.error); };
      };
    });
  }
  function show() {
    box.hidden = false;
    forget.hidden = !held;
    details.hidden = !!held;
    state.textContent = held
      ? "Your answer is signed in this browser with your key " + held.name + "; the inbox never sees it."
      : "Your answer is signed by the inbox with the key registered for you.";
  }
  function fail(message) {
    error.textContent = message;
    error.hidden = false;
    document.querySelectorAll("form[data-sign] button").forEach(function (b) { b.disabled = false; });
  }
  function b64(bytes) {
    var text = "";
    new Uint8Array(bytes).forEach(function (b) { text += String.fromCharCode(b); });
    return btoa(text);
  }
  function unb64(text) {
    return Uint8Array.from(atob(text), function (c) { return c.charCodeAt(0); });
  }
  function parse(text) {
    var m = /^PRIVATE\+KEY\+([^+\s]+)\+([0-9a-fA-F]{8})\+([A-Za-z0-9+/]+={0,2})$/.exec(text.trim());
    if (!m) throw new Error("that is not a private key line (PRIVATE+KEY+name+id+key, from agentfence keys generate)");
    var raw = unb64(m[3]);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("that key is not an Ed25519 key");
    var der = new Uint8Array(48);
    der.set(PKCS8);
    der.set(raw.subarray(1), 16);
    return crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]).then(function (key) {
      return { name: m[1] + "+" + m[2].toLowerCase(), key: key };
    });
  }
  function json(response) {
    return response.json().then(function (body) {
      if (!response.ok) throw new Error(body.error ? body.error.message : "refused (" + response.status + ")");
      return body;
    });
  }

  document.getElementById("key-use").addEventListener("click", function () {
    var text = document.getElementById("key-text");
    var line = text.value;
    text.value = "";  // the secret leaves the page at once; only the CryptoKey stays
    error.hidden = true;
    parse(line).then(function (found) {
      return db("readwrite", function (s) { return s.put(found, slot); }).then(function () {
        held = found;
        show();
      });
    }).catch(function (e) { fail("Cannot use that key: " + e.message); });
  });
  forget.addEventListener("click", function () {
    db("readwrite", function (s) { return s.delete(slot); }).then(function () { held = null; show(); });
  });
  document.querySelectorAll("form[data-sign]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!held) return;  // the inbox signs: the plain form post
      event.preventDefault();
      error.hidden = true;
      var id = encodeURIComponent(form.dataset.sign);
      var data = new FormData(form);
      var prepared;
      fetch("/requests/" + id + "/prepare", {
        method: "POST", credentials: "same-origin", body: new URLSearchParams(data)
      }).then(json).then(function (body) {
        prepared = body;
        return crypto.subtle.sign({ name: "Ed25519" }, held.key, unb64(body.bytes));
      }).then(function (signature) {
        return fetch("/requests/" + id + "/answer-signed", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": data.get("csrf") },
          body: JSON.stringify({ answer: prepared.answer, key: held.name, signature: b64(signature) })
        });
      }).then(json).then(function (done) {
        location.assign(done.location);
      }).catch(function (e) { fail(e.message); });
    });
  });
  db("readonly", function (s) { return s.get(slot); }).then(function (found) {
    held = found || null;
    show();
  }).catch(function () { show(); });
})();
