// Shows each event of the activity stream as it arrives, above the ones the
// server rendered. The stream starts right after those (data-last-event-id), so
// nothing published meanwhile is lost or shown twice. EventSource reconnects
// by itself and sends Last-Event-ID, so events missed meanwhile are replayed;
// after an error it does not retry (a 429, a 502), a new one is opened. A
// "reset" says the server lost the history the page shows (Redis restarted
// empty): the page then shows the history the server has now, as a reload
// would, and goes live right after it.
(function () {
  "use strict";
  var script = document.currentScript;
  var feed = document.getElementById("feed");
  var status = document.getElementById("status");
  var empty = document.getElementById("empty");
  var lastId = script.dataset.lastEventId || "";
  var liveText = "Live";
  var reloadedAt = 0;
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function twoDigits(number) { return (number < 10 ? "0" : "") + number; }

  // "7 Dec, 14:03", as the server writes it, in the reader's time zone.
  function readableTime(date) {
    return date.getDate() + " " + MONTHS[date.getMonth()] + ", " +
      twoDigits(date.getHours()) + ":" + twoDigits(date.getMinutes());
  }

  function showTime(element) {
    var date = new Date(element.getAttribute("datetime"));
    if (!isNaN(date.getTime())) { element.textContent = readableTime(date); }
  }

  function describe(value) {
    if (value && typeof value === "object" && value.text) { return value.text; }
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function show(event) {
    var item = document.createElement("li");
    var text = document.createElement("span");
    var value;
    try { value = JSON.parse(event.data); } catch (error) { value = event.data; }
    text.className = "text";
    text.textContent = describe(value);
    item.appendChild(text);
    if (value && typeof value.at === "string") {
      var time = document.createElement("time");
      time.setAttribute("datetime", value.at);
      showTime(time);
      item.appendChild(document.createTextNode(" "));
      item.appendChild(time);
    }
    if (value && value.kind === "order") { item.className = "mine"; }
    item.dataset.eventId = event.lastEventId;
    feed.insertBefore(item, feed.firstChild);
    empty.hidden = true;
  }

  function streamUrl() {
    var url = script.dataset.stream;
    return lastId ? url + "?last_event_id=" + encodeURIComponent(lastId) : url;
  }

  // The feed and the id after it, from the page as the server renders it now;
  // without them (the broker away again), the feed stays and goes on from the
  // reset's id.
  function reload() {
    fetch(window.location.href, {credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) { throw new Error(response.status); }
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var from = page.querySelector("script[data-last-event-id]");
        var items = page.getElementById("feed");
        if (!from || !from.dataset.lastEventId || !items) { throw new Error("no history"); }
        feed.replaceChildren.apply(feed, Array.prototype.map.call(
          items.children, function (item) { return document.importNode(item, true); }));
        Array.prototype.forEach.call(feed.querySelectorAll("time[datetime]"), showTime);
        empty.hidden = feed.children.length > 0;
        lastId = from.dataset.lastEventId;
      })
      .catch(function () { /* lastId is the reset's */ })
      .then(connect);
  }

  function connect() {
    var source = new EventSource(streamUrl());
    source.onopen = function () { status.textContent = liveText; };
    source.onerror = function () {
      status.textContent = "Reconnecting…";
      if (source.readyState === EventSource.CLOSED) {
        window.setTimeout(connect, 3000 + Math.random() * 3000);
      }
    };
    source.onmessage = function (event) {
      lastId = event.lastEventId || lastId;
      show(event);
    };
    source.addEventListener("reset", function (event) {
      lastId = event.lastEventId || lastId;
      liveText = "Live (some older events are no longer available)";
      status.textContent = liveText;
      // At most one reload every 30 s: a server whose every stream starts
      // with a reset (one MemoryBroker per process) keeps this stream.
      if (Date.now() - reloadedAt > 30000) {
        reloadedAt = Date.now();
        source.close();
        reload();
      }
    });
  }

  Array.prototype.forEach.call(feed.querySelectorAll("time[datetime]"), showTime);
  connect();
})();
