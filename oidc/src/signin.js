// Sichat's sign-in and account pages: passkeys (WebAuthn) and waiting for a wallet's
// approval. Served from the node itself (CSP script-src 'self'); the pages work without it
// for passwords, and with its "Continue after approving" button for approvals.
(function () {
  "use strict";

  function toBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toB64u(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function field(form, name) {
    var el = form.querySelector('[name="' + name + '"]');
    return el ? el.value : "";
  }

  function set(form, name, value) {
    form.querySelector('[name="' + name + '"]').value = value;
  }

  function fail(message) {
    var el = document.getElementById("passkey-error");
    if (el) {
      el.textContent = message;
      el.hidden = false;
    }
  }

  async function postJson(url, body) {
    var r = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    var data = await r.json().catch(function () { return {}; });
    if (!r.ok) throw new Error(data.message || "the node answered " + r.status);
    return data;
  }

  function needWebAuthn() {
    if (!window.PublicKeyCredential || !navigator.credentials) {
      throw new Error("this browser does not support passkeys");
    }
  }

  // Sign in with a passkey: with the user name typed, that account's passkeys; with none,
  // any passkey of this node the browser holds (discoverable). On load, where the browser
  // can, the passkeys are offered in the user name field's autofill (conditional UI).
  var signIn = document.getElementById("passkey-signin");
  var pending = null;

  async function passkeySignIn(name, conditional) {
    var form = document.getElementById("passkey-form");
    var got = await postJson(signIn.dataset.options, {
      request: field(form, "request"),
      csrf: field(form, "csrf"),
      username: name,
    });
    var pk = got.options.publicKey;
    pk.challenge = toBuf(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    var ask = { publicKey: pk };
    if (conditional) {
      pending = new AbortController();
      ask.mediation = "conditional";
      ask.signal = pending.signal;
    }
    var cred = await navigator.credentials.get(ask);
    var r = cred.response;
    set(form, "ceremony", got.ceremony);
    set(form, "credential", JSON.stringify({
      id: cred.id,
      rawId: toB64u(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: toB64u(r.authenticatorData),
        clientDataJSON: toB64u(r.clientDataJSON),
        signature: toB64u(r.signature),
        userHandle: r.userHandle ? toB64u(r.userHandle) : null,
      },
      extensions: {},
    }));
    form.submit();
  }

  if (signIn) {
    signIn.addEventListener("click", async function () {
      try {
        needWebAuthn();
        // One WebAuthn request at a time: the autofill one gives way.
        if (pending) pending.abort();
        var user = document.getElementById("username");
        await passkeySignIn(user ? user.value.trim() : "", false);
      } catch (e) {
        fail("Passkey sign-in failed: " + e.message);
      }
    });
    if (window.PublicKeyCredential && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (yes) {
        if (!yes) return;
        passkeySignIn("", true).catch(function (e) {
          if (e && e.name !== "AbortError") fail("Passkey sign-in failed: " + e.message);
        });
      });
    }
  }

  // Add a passkey, from the account page or a `sichat passkey add` link.
  var add = document.getElementById("passkey-add");
  if (add) {
    add.addEventListener("click", async function () {
      var form = document.getElementById("passkey-add-form");
      try {
        needWebAuthn();
        var got = await postJson(add.dataset.options, { csrf: field(form, "csrf"), link: field(form, "link") });
        var pk = got.options.publicKey;
        pk.challenge = toBuf(pk.challenge);
        pk.user.id = toBuf(pk.user.id);
        (pk.excludeCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
        var cred = await navigator.credentials.create({ publicKey: pk });
        set(form, "ceremony", got.ceremony);
        set(form, "credential", JSON.stringify({
          id: cred.id,
          rawId: toB64u(cred.rawId),
          type: cred.type,
          response: {
            attestationObject: toB64u(cred.response.attestationObject),
            clientDataJSON: toB64u(cred.response.clientDataJSON),
          },
          extensions: {},
        }));
        form.submit();
      } catch (e) {
        fail("Adding the passkey failed: " + e.message);
      }
    });
  }

  // Wait for a wallet's approval, then continue by itself.
  var waiting = document.getElementById("approval");
  if (waiting) {
    var poll = async function () {
      try {
        var r = await fetch(waiting.dataset.status, { credentials: "same-origin", cache: "no-store" });
        var s = await r.json();
        if (s.status === "approved") {
          document.getElementById("approval-form").submit();
          return;
        }
        if (s.status === "gone") {
          // Not a reload: that would lose what is typed in the other forms.
          var a = document.createElement("a");
          a.href = waiting.dataset.renew;
          a.textContent = "This code has expired or was used: get a new one";
          waiting.appendChild(a);
          var code = document.getElementById("approval-code");
          if (code) code.style.textDecoration = "line-through";
          return;
        }
      } catch (e) {
        // The node is briefly unreachable: keep waiting.
      }
      setTimeout(poll, 1000);
    };
    setTimeout(poll, 1000);
  }
})();
