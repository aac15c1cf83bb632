/// The console's page, script and style, embedded: hypervisor hosts are often offline, so nothing
/// comes from a CDN. The script builds every element with textContent (no HTML from data).
enum ConsoleAssets {
    static let loginPage = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>vmha — log in</title>
        <link rel="stylesheet" href="/app.css"><script src="/app.js" defer></script></head>
        <body class="login">
        <form id="login-form"><h1>vmha</h1>
        <label for="token">Console token (the first line of <code>console.token_file</code>)</label>
        <input id="token" type="password" autocomplete="current-password" autofocus>
        <button id="login" type="submit">Log in</button>
        <p id="login-error" role="alert"></p></form>
        </body></html>
        """

    static func appPage(csrf: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="csrf" content="\(csrf)"><title>vmha</title>
        <link rel="stylesheet" href="/app.css"><script src="/app.js" defer></script></head>
        <body>
        <header><h1>vmha</h1><span id="cluster"></span><span id="live" class="down">connecting…</span>
        <nav><button data-tab="overview" class="active">Overview</button><button data-tab="vms-tab">VMs</button>
        <button data-tab="events-tab">Events</button><button data-tab="config-tab">Configuration</button>
        <button id="logout">Log out</button></nav></header>
        <main>
        <section id="overview" class="tab"><div id="hosts" class="cards"></div></section>
        <section id="vms-tab" class="tab" hidden>
        <table id="vms"><thead><tr><th>VM</th><th>here</th><th>peer</th><th>runs on</th><th>domain</th><th>disks</th><th>actions</th></tr></thead><tbody></tbody></table>
        <p id="action-result" role="status"></p>
        <div id="place"><button id="place-plan">Plan a balanced placement</button><pre id="place-diff"></pre><button id="place-apply" hidden>Apply this plan</button></div>
        <section id="detail" hidden><h2 id="detail-name"></h2><div id="detail-disks"></div>
        <h3>Guest write latency, mean between two reads (last 10 minutes)</h3><canvas id="latency-chart" width="600" height="120"></canvas>
        <h3>Resync rate (last 10 minutes)</h3><canvas id="detail-chart" width="600" height="120"></canvas>
        <h3>Events</h3><ul id="detail-events" class="events"></ul></section>
        </section>
        <section id="events-tab" class="tab" hidden>
        <label>VM <select id="filter-vm"><option value="">all</option></select></label>
        <label>kind <select id="filter-kind"><option value="">all</option></select></label>
        <ul id="events" class="events"></ul></section>
        <section id="config-tab" class="tab" hidden><pre id="config"></pre></section>
        </main>
        <dialog id="confirm"><p id="confirm-text"></p><button id="confirm-ok">Confirm</button> <button id="confirm-cancel">Cancel</button></dialog>
        </body></html>
        """
    }

    static let style = """
        body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f4f6f9; }
        header { display: flex; gap: 1em; align-items: center; background: #1d2330; color: #fff; padding: .5em 1em; }
        header h1 { font-size: 1.2em; margin: 0; } nav { margin-left: auto; } nav button { margin-left: .3em; }
        nav button.active { font-weight: bold; } main { padding: 1em; }
        #live.up { color: #6fdc8c; } #live.down { color: #ff8389; }
        .cards { display: flex; gap: 1em; flex-wrap: wrap; } .card { background: #fff; border-radius: 6px; padding: .8em 1em; min-width: 14em; box-shadow: 0 1px 2px #0002; }
        table { border-collapse: collapse; background: #fff; width: 100%; } th, td { text-align: left; padding: .4em .6em; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
        .bar { width: 10em; height: .7em; background: #e3e6ea; border-radius: 3px; display: inline-block; vertical-align: middle; }
        .bar > div { height: 100%; background: #4589ff; border-radius: 3px; }
        .bad { color: #c21d2f; } .ok { color: #198038; } .events { list-style: none; padding: 0; font-family: ui-monospace, monospace; font-size: 12px; }
        .events li { padding: .15em 0; border-bottom: 1px solid #e3e6ea; } button { cursor: pointer; }
        body.login { display: grid; place-items: center; height: 100vh; } #login-form { background: #fff; padding: 2em; border-radius: 6px; display: grid; gap: .6em; }
        #login-error { color: #c21d2f; min-height: 1.2em; } pre { background: #fff; padding: 1em; overflow: auto; }
        canvas { background: #fff; border-radius: 6px; box-shadow: 0 1px 2px #0002; }
        """

    static let script = #"""
        "use strict";
        const $ = (id) => document.getElementById(id);
        function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }
        function bytes(b) { return b >= 1 << 30 ? (b / (1 << 30)).toFixed(1) + " GiB" : b >= 1 << 20 ? (b / (1 << 20)).toFixed(1) + " MiB" : (b / 1024).toFixed(0) + " KiB"; }

        if ($("login-form")) {
          $("login-form").addEventListener("submit", async (e) => {
            e.preventDefault();
            const r = await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: $("token").value }) });
            if (r.ok) { location.reload(); } else { $("login-error").textContent = (await r.json()).error || "refused"; }
          });
        } else {
          const csrf = document.querySelector('meta[name="csrf"]').content;
          let state = null, events = [], detail = null;
          const rates = {}, latencies = {}, lastWrites = {};
          async function post(path, body) {
            const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) });
            return r.json();
          }
          function confirmThen(text, action) {
            $("confirm-text").textContent = text;
            $("confirm").showModal();
            $("confirm-ok").onclick = async () => { $("confirm").close(); $("action-result").textContent = "…"; const r = await action(); $("action-result").textContent = r.ok ? (r.message || "done") : "refused: " + (r.error || "?"); $("action-result").className = r.ok ? "ok" : "bad"; refresh(); };
            $("confirm-cancel").onclick = () => $("confirm").close();
          }
          document.querySelectorAll("nav button[data-tab]").forEach((b) => b.addEventListener("click", () => {
            document.querySelectorAll(".tab").forEach((t) => t.hidden = t.id !== b.dataset.tab);
            document.querySelectorAll("nav button").forEach((n) => n.classList.toggle("active", n === b));
            if (b.dataset.tab === "config-tab") fetch("/api/config").then((r) => r.text()).then((t) => $("config").textContent = t);
          }));
          $("logout").onclick = async () => { await post("/logout", {}); location.reload(); };
          $("place-plan").onclick = async () => {
            const r = await post("/api/action", { command: "place", dryRun: true });
            if (!r.ok) { $("place-diff").textContent = "refused: " + r.error; return; }
            const p = r.place;
            $("place-diff").textContent = "score " + p.scoreBefore + " → " + p.scoreAfter + "\n" + (p.moves.length ? p.moves.map((m) => "  " + m).join("\n") : "  no moves") + (p.unplaced.length ? "\nunplaced: " + p.unplaced.join(", ") : "");
            $("place-apply").hidden = p.moves.length === 0;
          };
          $("place-apply").onclick = () => confirmThen("Apply the plan above: each move is a switchover (clean shutdown, start on the other host).", () => post("/api/action", { command: "place", dryRun: false }));

          // The rows are rebuilt only when what they show changed (not at every read: a click
          // would land on a row replaced under the pointer). The write counters feed the chart only.
          let shown = null;
          function render() {
            if (!state) return;
            const s = state;
            const signature = JSON.stringify(s, (k, v) => (k === "guestWrites" || k === "guestWriteSeconds" || k === "eventSequence" ? undefined : v));
            if (signature === shown) { renderDetail(); return; }
            shown = signature;
            $("cluster").textContent = "served by " + s.host;
            const hosts = $("hosts"); hosts.replaceChildren();
            const here = el("div", undefined, "card"); here.id = "host-" + s.host;
            here.append(el("h2", s.host + " (this console's host)"), el("div", "witness " + (s.witness || "none") + ", vote: " + s.lease), el("div", s.fenced ? "FENCED: domains paused" : "not fenced", s.fenced ? "bad" : "ok"));
            const peer = el("div", undefined, "card"); peer.id = "host-" + s.peer;
            const ps = el("div", "peer " + s.peerState, s.peerState === "alive" ? "ok" : "bad"); ps.id = "peer-state";
            peer.append(el("h2", s.peer), ps, el("div", "heartbeat networks: " + s.networks.join(", ")));
            const running = s.vms.filter((v) => v.runsOn === s.host).length, there = s.vms.filter((v) => v.runsOn === s.peer).length;
            here.append(el("div", running + " VMs run here")); peer.append(el("div", there + " VMs run there"));
            for (const c of s.hostChecks || []) { const line = el("div", "host check " + c.name + ": " + c.health + (c.lastResult ? " (" + c.lastResult + ")" : ""), c.health === "healthy" ? "ok" : c.health === "starting" ? "" : "bad"); line.dataset.hostCheck = c.name; here.append(line); }
            if (s.peerFailingHostChecks) peer.append(el("div", "failed host checks: " + s.peerFailingHostChecks.join(", "), "bad"));
            hosts.append(here, peer);
            const body = $("vms").tBodies[0]; body.replaceChildren();
            const other = s.peer;
            for (const vm of s.vms) {
              const tr = el("tr"); tr.dataset.vm = vm.name;
              const name = el("td"); const link = el("a", vm.name); link.href = "#"; link.onclick = (e) => { e.preventDefault(); detail = vm.name; renderDetail(); }; name.append(link);
              const runsOn = el("td", vm.runsOn || "-", "runs-on");
              const disks = el("td", undefined, "disks");
              for (const d of vm.volumes) {
                const line = el("div"); line.dataset.volume = d.name;
                line.append(el("span", d.name + " " + d.link + " ", "link"), el("span", bytes(d.dirtyBytes) + " out of sync", d.dirtyBytes ? "bad" : "ok"));
                if (d.link === "syncSource" || d.link === "syncTarget") {
                  const bar = el("div", undefined, "bar resync"), fill = el("div");
                  const pct = d.resyncTotalBytes ? Math.min(100, 100 * d.resyncDoneBytes / d.resyncTotalBytes) : 0;
                  fill.style.width = pct.toFixed(0) + "%"; bar.append(fill); bar.dataset.done = d.resyncDoneBytes; bar.dataset.total = d.resyncTotalBytes;
                  line.append(el("br"), bar, el("span", " " + bytes(d.resyncDoneBytes) + "/" + bytes(d.resyncTotalBytes) + (d.resyncBytesPerSecond ? " at " + bytes(d.resyncBytesPerSecond) + "/s" : "") + (d.resyncETASeconds != null ? ", ETA " + Math.ceil(d.resyncETASeconds) + " s" : "")));
                }
                if (d.lastError) line.append(el("div", d.lastError, "bad"));
                disks.append(line);
              }
              for (const c of vm.checks || []) { const line = el("div", "check " + c.name + ": " + c.health + (c.lastResult ? " (" + c.lastResult + ")" : ""), c.health === "healthy" ? "ok" : c.health === "starting" ? "" : "bad"); line.dataset.check = c.name; line.classList.add("check"); disks.append(line); }
              if (vm.lastError) disks.append(el("div", "error: " + vm.lastError, "bad"));
              if (vm.notStarted) disks.append(el("div", "not started: " + vm.notStarted, "bad"));
              const actions = el("td");
              const target = vm.runsOn === s.host ? other : s.host;
              const move = el("button", "switch over to " + target, "migrate"); move.dataset.to = target;
              move.onclick = () => confirmThen("Switch " + vm.name + " over to " + target + ": clean shutdown where it runs, role swap, start on " + target + ". The guest reboots.", () => post("/api/action", { command: "migrate", vm: vm.name, to: target }));
              const live = el("button", "live migrate to " + target, "live-migrate"); live.dataset.to = target;
              live.onclick = () => confirmThen("Live migrate " + vm.name + " to " + target + ": the guest keeps running; its disks change primary under it.", () => post("/api/action", { command: "migrate", vm: vm.name, to: target, live: true }));
              const mode = el("select"); for (const m of ["incremental", "full", "checksum", "verify"]) mode.append(el("option", m));
              const resync = el("button", "resync", "resync");
              resync.onclick = () => confirmThen("Start a " + mode.value + " resync of " + vm.name + "'s disks from the host that runs it" + (mode.value === "verify" ? " (verify changes nothing, it marks differences)." : "."), () => post("/api/action", { command: "resync", vm: vm.name, mode: mode.value }));
              actions.append(move, live, mode, resync);
              tr.append(name, el("td", vm.state + "/" + vm.replica, "state"), el("td", (vm.peerState || "?") + "/" + (vm.peerReplica || "?"), "peer"), runsOn, el("td", vm.domain || "-", "domain"), disks, actions);
              body.append(tr);
            }
            const vmFilter = $("filter-vm");
            for (const vm of s.vms) if (![...vmFilter.options].some((o) => o.value === vm.name)) vmFilter.append(new Option(vm.name, vm.name));
            renderDetail();
          }
          function eventVM(e) { const k = Object.values(e.kind)[0] || {}; return k.vm || (k.volume ? k.volume.replace(/-disk\d+$/, "") : ""); }
          function eventLine(e) {
            const kind = Object.keys(e.kind)[0], li = el("li"); li.dataset.kind = kind; li.className = "event";
            li.textContent = "#" + e.sequence + " " + new Date(e.time * 1000).toLocaleTimeString() + " " + kind + " " + JSON.stringify(Object.values(e.kind)[0]);
            return li;
          }
          function renderEvents() {
            const vm = $("filter-vm").value, kind = $("filter-kind").value, list = $("events");
            list.replaceChildren(...events.filter((e) => (!vm || eventVM(e) === vm) && (!kind || Object.keys(e.kind)[0] === kind)).slice(-300).reverse().map(eventLine));
          }
          $("filter-vm").onchange = renderEvents; $("filter-kind").onchange = renderEvents;
          function renderDetail() {
            if (!detail || !state) return;
            const vm = state.vms.find((v) => v.name === detail); if (!vm) return;
            $("detail").hidden = false; $("detail-name").textContent = vm.name + ": " + vm.state + "/" + vm.replica + " on " + state.host;
            const disks = $("detail-disks"); disks.replaceChildren();
            for (const d of vm.volumes) disks.append(el("div", d.name + ": image " + (d.image || "?") + ", metadata " + (d.metadata || "?") + ", generation " + (d.generation || "?") + ", link " + d.link + ", role " + d.role + ", " + d.resyncsCompleted + " resyncs done"));
            $("detail-events").replaceChildren(...events.filter((e) => eventVM(e) === vm.name).slice(-50).reverse().map(eventLine));
            chart($("latency-chart"), latencies[vm.name] || [], (v) => (v * 1000).toFixed(2) + " ms", 0.001);
            chart($("detail-chart"), rates[vm.name] || [], (v) => bytes(v) + "/s", 1);
          }
          function chart(c, series, label, floor) {
            const g = c.getContext("2d"), now = Date.now() / 1000; g.clearRect(0, 0, c.width, c.height);
            const points = series.filter((p) => p.t > now - 600), max = Math.max(floor, ...points.map((p) => p.v));
            g.strokeStyle = "#4589ff"; g.beginPath();
            points.forEach((p, i) => { const x = c.width * (p.t - (now - 600)) / 600, y = c.height - 4 - (c.height - 8) * p.v / max; i ? g.lineTo(x, y) : g.moveTo(x, y); });
            g.stroke(); g.fillStyle = "#4589ff";
            points.forEach((p) => { g.beginPath(); g.arc(c.width * (p.t - (now - 600)) / 600, c.height - 4 - (c.height - 8) * p.v / max, 2, 0, 7); g.fill(); });
            g.fillStyle = "#1d2330"; g.fillText("max " + label(max) + (points.length ? "" : " (no data yet)"), 4, 12);
            c.dataset.points = points.length;
          }
          // Mean write latency per VM between two state reads, from the volumes' running totals.
          function sampleLatency(s) {
            const now = Date.now() / 1000;
            for (const vm of s.vms) {
              const count = vm.volumes.reduce((a, d) => a + (d.guestWrites || 0), 0), seconds = vm.volumes.reduce((a, d) => a + (d.guestWriteSeconds || 0), 0);
              const last = lastWrites[vm.name]; lastWrites[vm.name] = { count, seconds };
              if (last && count > last.count) (latencies[vm.name] = latencies[vm.name] || []).push({ t: now, v: (seconds - last.seconds) / (count - last.count) });
            }
          }
          let pending = null;
          async function refresh() {
            const r = await fetch("/api/state");
            if (r.status === 401) { location.reload(); return; }
            const answer = await r.json(); if (answer.status) { state = answer.status; sampleLatency(state); render(); }
          }
          function soon() { if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 150); }
          const source = new EventSource("/api/events");
          source.onopen = () => { $("live").textContent = "live"; $("live").className = "up"; };
          source.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "down"; };
          source.onmessage = (m) => {
            const e = JSON.parse(m.data); events.push(e); if (events.length > 2000) events.shift();
            const kind = Object.keys(e.kind)[0], k = e.kind[kind];
            if (![...$("filter-kind").options].some((o) => o.value === kind)) $("filter-kind").append(new Option(kind, kind));
            if (kind === "resyncProgress") { const vm = eventVM(e); (rates[vm] = rates[vm] || []).push({ t: e.time, v: k.bytesPerSecond }); }
            renderEvents(); soon();
          };
          refresh();
          // ETA and rates move between events; the state is cheap to read.
          setInterval(refresh, 2000);
        }
        """#
}
