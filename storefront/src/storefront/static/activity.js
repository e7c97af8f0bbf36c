// Shows each event of the activity stream as it arrives, above the ones the
// server rendered. The stream starts right after those (data-last-event-id), so
// nothing published meanwhile is lost or shown twice. EventSource reconnects
// by itself and sends Last-Event-ID, so events missed meanwhile are replayed;
// after an error it does not retry (a 429, a 502), a new one is opened.
(function () {
  "use strict";
  var script = document.currentScript;
  var feed = document.getElementById("feed");
  var status = document.getElementById("status");
  var empty = document.getElementById("empty");
  var lastId = script.dataset.lastEventId || "";
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

  function connect() {
    var source = new EventSource(streamUrl());
    source.onopen = function () { status.textContent = "Live"; };
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
      status.textContent = "Live (some older events are no longer available)";
    });
  }

  Array.prototype.forEach.call(feed.querySelectorAll("time[datetime]"), showTime);
  connect();
})();
