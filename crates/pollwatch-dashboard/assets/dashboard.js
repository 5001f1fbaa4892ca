// pollwatch's dashboard: signs in with a viewer token kept in this tab's sessionStorage, fetches
// the page's view (HTML rendered and escaped by the server) with it, and listens to
// /api/v1/events to fetch the view again after each change that concerns it, and again while
// the view says it holds less than the change (the server is computing a newer one). No build
// step, no library: the browser's fetch and streams.
"use strict";

(() => {
  const TOKEN_KEY = "pollwatch.token";
  // A view shows silence too (observers who have not reported): fetched at least this often.
  const REFRESH_EVERY_MS = 60_000;
  // Waits between attempts to reconnect the event stream.
  const RETRY_FIRST_MS = 500;
  const RETRY_MOST_MS = 5_000;

  const body = document.body;
  const view = document.getElementById("view");
  const status = document.getElementById("status");
  const signIn = document.getElementById("sign-in");
  const signInForm = document.getElementById("sign-in-form");
  const signInError = document.getElementById("sign-in-error");
  const signOut = document.getElementById("sign-out");
  const details = document.getElementById("details");
  const detailsBody = document.getElementById("details-body");
  const viewUrl = body.dataset.view + location.search;

  let token = sessionStorage.getItem(TOKEN_KEY);
  let stream = null; // the AbortController of the open event stream
  let lastEventId = null;
  let loading = false;
  let loadAgain = false;
  let timer = null;
  // The highest sequence number an event has named: the view is behind until it holds that.
  let wanted = 0;
  let behindTimer = null;
  // How soon a view that is behind is fetched again (the server is computing a newer one),
  // doubling while it stays behind.
  const BEHIND_RETRY_MS = 250;
  const BEHIND_RETRY_MOST_MS = 5_000;
  let behindWait = BEHIND_RETRY_MS;
  // The server sends a keep-alive every 15 s: a stream silent for longer than this is dead.
  const STREAM_SILENT_MS = 45_000;
  const VIEW_TIMEOUT_MS = 30_000;
  // Each sign-in is a session; what a request of an earlier one brings back is dropped.
  let session = 0;

  const authorised = (extra) => Object.assign({ Authorization: "Bearer " + token }, extra || {});
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function showSignIn(message) {
    session += 1;
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (stream) stream.abort();
    stream = null;
    clearInterval(timer);
    clearTimeout(behindTimer);
    behindTimer = null;
    if (details.open) details.close();
    view.replaceChildren();
    signIn.hidden = false;
    signOut.hidden = true;
    signInError.textContent = message || "";
    setStatus("idle", "not signed in");
    document.getElementById("token").focus();
  }

  function showProblem(text) {
    const p = document.createElement("p");
    p.className = "error";
    p.id = "problem";
    p.textContent = text;
    view.replaceChildren(p);
  }

  // Fetches the view; a change that arrives meanwhile fetches it once more afterwards.
  async function load() {
    if (loading) {
      loadAgain = true;
      return;
    }
    loading = true;
    const mine = session;
    try {
      do {
        loadAgain = false;
        const signal = AbortSignal.timeout(VIEW_TIMEOUT_MS);
        const response = await fetch(viewUrl, { headers: authorised(), cache: "no-store", signal });
        if (mine !== session) return;
        if (response.status === 401) {
          showSignIn("That token was not accepted (unknown, or removed). Ask for a new one.");
          return;
        }
        if (!response.ok) {
          const problem = await response.json().catch(() => null);
          showProblem((problem && problem.detail) || "The server answered " + response.status + ".");
          continue;
        }
        const html = await response.text();
        if (mine !== session) return;
        view.innerHTML = html;
        view.dataset.loadedAt = String(Date.now());
        const holds = view.querySelector("[data-seq]");
        if (holds && Number(holds.dataset.seq) < wanted) {
          if (!behindTimer) {
            behindTimer = setTimeout(() => {
              behindTimer = null;
              load();
            }, behindWait);
            behindWait = Math.min(behindWait * 2, BEHIND_RETRY_MOST_MS);
          }
        } else {
          behindWait = BEHIND_RETRY_MS;
        }
      } while (loadAgain && token);
    } catch (error) {
      // The server is unreachable: the event stream's status says so, and its reconnection
      // fetches the view again.
    } finally {
      loading = false;
    }
  }

  function concerns(kinds) {
    const page = view.querySelector(".page");
    if (!page || !Array.isArray(kinds)) return true;
    const shown = (page.dataset.kinds || "").split(" ");
    return kinds.some((kind) => shown.includes(kind));
  }

  function handle(block) {
    let name = "message";
    let data = "";
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data += (data ? "\n" : "") + value;
      else if (field === "id") lastEventId = value;
    }
    let event = null;
    try {
      event = data ? JSON.parse(data) : null;
    } catch (error) {
      return name;
    }
    if (name === "ready" && event) {
      // Where the feed stands now (a new server may stand lower than the old one did): the
      // view must hold that, and is fetched again in case it was computed long ago.
      wanted = Number(event.seq) || 0;
      load();
    } else if (name === "change" && event && concerns(event.kinds)) {
      wanted = Math.max(wanted, Number(event.seq) || 0);
      load();
    }
    return name;
  }

  // Reads /api/v1/events until the token is gone, reconnecting with Last-Event-ID.
  async function listen() {
    let wait = RETRY_FIRST_MS;
    const mine = session;
    while (token && mine === session) {
      const controller = new AbortController();
      stream = controller;
      let silent = null;
      const heard = () => {
        clearTimeout(silent);
        silent = setTimeout(() => controller.abort(), STREAM_SILENT_MS);
      };
      try {
        const headers = authorised({ Accept: "text/event-stream" });
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        const response = await fetch("/api/v1/events", { headers, signal: controller.signal, cache: "no-store" });
        if (response.status === 401) {
          showSignIn("That token was not accepted (unknown, or removed). Ask for a new one.");
          return;
        }
        if (!response.ok || !response.body) throw new Error("the event stream answered " + response.status);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        heard();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          heard();
          buffer += value;
          let end;
          while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
            if (handle(block) === "ready") {
              setStatus("live", "live");
              wait = RETRY_FIRST_MS;
            }
          }
        }
      } catch (error) {
        // Aborted by a sign-out (then this session is over) or by the silence watchdog.
      }
      clearTimeout(silent);
      if (!token || mine !== session) return;
      setStatus("reconnecting", "reconnecting…");
      await sleep(wait);
      wait = Math.min(wait * 2, RETRY_MOST_MS);
    }
  }

  function start() {
    session += 1;
    wanted = 0;
    behindWait = BEHIND_RETRY_MS;
    signIn.hidden = true;
    signOut.hidden = false;
    setStatus("connecting", "connecting…");
    load();
    listen();
    clearInterval(timer);
    timer = setInterval(load, REFRESH_EVERY_MS);
  }

  signInForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const entered = document.getElementById("token").value.trim();
    if (!entered) return;
    if (!/^[\x21-\x7e]{1,256}$/.test(entered)) {
      signInError.textContent = "A token is letters, digits and punctuation only (pw_…): check what was pasted.";
      return;
    }
    token = entered;
    sessionStorage.setItem(TOKEN_KEY, token);
    document.getElementById("token").value = "";
    start();
  });

  signOut.addEventListener("click", () => showSignIn(""));

  // A filter form leaves out the filters set to "any", and applies as soon as one changes.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.classList || !form.classList.contains("filters")) return;
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) query.append(name, value);
    const search = query.toString();
    location.assign(form.getAttribute("action") + (search ? "?" + search : ""));
  });
  document.addEventListener("change", (event) => {
    const form = event.target.form;
    if (form && form.classList.contains("filters")) form.requestSubmit();
  });

  // "Details" opens a report with its revisions.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-report]");
    if (!button || !token) return;
    if (await openReport(button.dataset.report)) details.showModal();
  });

  // A reviewer's decision, from the form in a report's details. It names the state and revision
  // shown, so that a decision never overwrites another reviewer's without the reviewer knowing.
  async function openReport(id) {
    const response = await fetch("/ui/reports/" + encodeURIComponent(id), { headers: authorised(), cache: "no-store" });
    if (response.status === 401) {
      showSignIn("That token was not accepted (unknown, or removed). Ask for a new one.");
      return false;
    }
    if (response.ok) detailsBody.innerHTML = await response.text();
    else detailsBody.textContent = "The report could not be read (" + response.status + ").";
    return true;
  }

  // Posts a reviewer's form; on success, or when someone else got there first, reads the report
  // again and says so in the form's message line (`stale` words the 409).
  async function decide(form, path, body, messageClass, recorded, stale) {
    const message = form.querySelector("." + messageClass);
    const id = form.dataset.report;
    const response = await fetch("/api/v1/reports/" + encodeURIComponent(id) + "/" + path, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, authorised()),
      body: JSON.stringify(body),
      cache: "no-store",
    });
    const reread = async (text) => {
      await openReport(id);
      const shown = detailsBody.querySelector("." + messageClass);
      if (shown) shown.textContent = text;
    };
    if (response.ok) {
      await reread(recorded);
      load();
      return;
    }
    let problem = {};
    try { problem = await response.json(); } catch (_) { problem = {}; }
    if (response.status === 401) {
      showSignIn("That token was not accepted (unknown, or removed). Ask for a new one.");
    } else if (response.status === 403) {
      message.textContent = "This token may read but not review: sign in with a reviewer's token to decide.";
    } else if (response.status === 409) {
      const who = problem.set_by ? problem.set_by : "the report's own arrival";
      await reread(stale(problem, who) + " Nothing was changed; read it again below and decide on what it is now.");
    } else {
      message.textContent = "Not recorded (" + response.status + "): " + (problem.detail || "the server gave no reason") + ".";
    }
  }

  // The reviewer's forms in a report's details: where each posts, what it names, and how a 409
  // is put in words. Each names what the reviewer saw (the state and revision, or the version
  // in force), so that a decision never overwrites another reviewer's without them knowing.
  const decisions = {
    review: {
      path: "review",
      body: (form, submitted) => ({
        decision: submitted,
        expected_state: form.dataset.state,
        expected_revision: Number(form.dataset.revision),
      }),
      recorded: "Recorded.",
      stale: (problem, who) =>
        "Someone else got there first: the report is now " + (problem.current_state || "changed") +
        " (revision " + (problem.current_revision || "?") + "), set by " + who + ".",
    },
    // A pick among a revision's conflicting versions.
    pick: {
      path: "version",
      body: (form, submitted) => ({
        revision: Number(form.dataset.revision),
        keep: submitted,
        expected_version: form.dataset.expected,
      }),
      recorded: "Recorded: that version counts now.",
      stale: (problem, who) =>
        "Someone else got there first: the report is now at revision " + (problem.current_revision || "?") +
        ", counting the version " + String(problem.current_version || "?").slice(0, 12) +
        "…; its state was last set by " + who + ".",
    },
  };

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    const name = form.classList && Object.keys(decisions).find((kind) => form.classList.contains(kind));
    if (!name) return;
    event.preventDefault();
    const kind = decisions[name];
    const messageClass = name + "-message";
    const reason = form.elements.reason.value.trim();
    if (!reason) {
      form.querySelector("." + messageClass).textContent = "Say why: the reason is kept in the review log.";
      return;
    }
    const body = Object.assign(kind.body(form, event.submitter ? event.submitter.value : ""), { reason: reason });
    await decide(form, kind.path, body, messageClass, kind.recorded, kind.stale);
  });

  if (token) start();
  else showSignIn("");
})();
