// A small time-series line chart on a <canvas>: jobs/s done (solid) and failed (dashed),
// so the two lines differ by more than their colour. No library: 15 minutes of points.
"use strict";
window.RateChart = (function () {
  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    var step = Math.pow(10, Math.floor(Math.log10(value)));
    var scaled = value / step;
    return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * step;
  }

  function draw(canvas, series, windowSeconds, now) {
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var left = 44, right = 8, top = 8, bottom = 22;
    var plotW = width - left - right, plotH = height - top - bottom;
    var start = now - windowSeconds;
    var peak = 0;
    series.forEach(function (p) { peak = Math.max(peak, p[1], p[2]); });
    var yMax = niceMax(peak);
    function x(t) { return left + ((t - start) / windowSeconds) * plotW; }
    function y(v) { return top + plotH - (v / yMax) * plotH; }

    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = css("--muted");
    ctx.strokeStyle = css("--line");
    ctx.lineWidth = 1;
    // Grid lines at round rates: a top of 1, 5 or 10 (x10^n) in fifths, of 2 in quarters.
    var lead = Math.round(yMax / Math.pow(10, Math.floor(Math.log10(yMax))));
    var steps = lead === 2 ? 4 : 5, step = yMax / steps;
    var decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    for (var i = 0; i <= steps; i++) {  // horizontal grid with the rate on the left
      var value = step * i, gy = Math.round(y(value)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, gy); ctx.lineTo(left + plotW, gy); ctx.stroke();
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      ctx.fillText(value.toFixed(decimals), left - 6, gy);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (var m = 15; m >= 0; m -= 5) {  // minutes ago along the bottom
      ctx.fillText(m ? "-" + m + " min" : "now", x(now - m * 60), top + plotH + 6);
    }

    function line(index, colour, dash) {
      ctx.save();
      ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.setLineDash(dash);
      ctx.beginPath();
      var started = false;
      series.forEach(function (p) {
        if (p[0] < start) return;
        if (started) ctx.lineTo(x(p[0]), y(p[index]));
        else { ctx.moveTo(x(p[0]), y(p[index])); started = true; }
      });
      ctx.stroke();
      ctx.restore();
    }
    line(1, css("--ok"), []);
    line(2, css("--bad"), [5, 4]);
    canvas.dataset.points = String(series.length);
    canvas.dataset.peak = String(peak);
  }

  // A resize (a phone turned, a window narrowed) redraws the last data at the new size.
  var last = null;
  function drawKept(canvas, series, windowSeconds, now) {
    last = [canvas, series, windowSeconds, now];
    draw(canvas, series, windowSeconds, now);
  }
  window.addEventListener("resize", function () { if (last) draw.apply(null, last); });

  return { draw: drawKept };
})();
