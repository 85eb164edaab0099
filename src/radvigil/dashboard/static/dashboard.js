/* radvigil dashboard: charts from embedded JSON, confirmation dialogs, the study viewer.
   Loaded with the vendored Chart.js; talks only to this server. */
(function () {
  "use strict";

  function drawCharts() {
    if (!window.Chart) return;
    const Chart = window.Chart;
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.responsive = true;
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    Chart.defaults.color = "#3c4654";
    Chart.defaults.plugins.legend.labels.boxWidth = 14;
    // Hide helper datasets (interval bounds) from the legend.
    Chart.defaults.plugins.legend.labels.filter = function (item) {
      return !/\((lower)\)$/.test(item.text);
    };
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      try {
        new Chart(canvas, JSON.parse(source.textContent));
      } catch (err) {
        canvas.replaceWith(document.createTextNode("Chart could not be drawn: " + err));
      }
    });
  }

  function wireDialogs() {
    document.querySelectorAll("[data-open-dialog]").forEach(function (button) {
      button.addEventListener("click", function () {
        const dialog = document.getElementById(button.dataset.openDialog);
        if (dialog && dialog.showModal) {
          dialog.showModal();
          const first = dialog.querySelector("textarea, input:not([type=hidden])");
          if (first) first.focus();
        }
      });
    });
    document.querySelectorAll("[data-close-dialog]").forEach(function (button) {
      button.addEventListener("click", function () {
        const dialog = button.closest("dialog");
        if (dialog) dialog.close();
      });
    });
    document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  /* Study viewer: window/level on the grey values, Grad-CAM overlay from the server. */
  function wireViewer() {
    const canvas = document.getElementById("study-canvas");
    if (!canvas) return;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const ww = document.getElementById("ww");
    const wl = document.getElementById("wl");
    const wwOut = document.getElementById("ww-value");
    const wlOut = document.getElementById("wl-value");
    const toggle = document.getElementById("overlay-toggle");
    const status = document.getElementById("viewer-status");
    let original = null;
    let overlay = null;

    function render() {
      if (!original) return;
      wwOut.textContent = ww.value;
      wlOut.textContent = wl.value;
      if (toggle.checked && overlay) {
        ctx.drawImage(overlay, 0, 0, canvas.width, canvas.height);
        return;
      }
      const width = Number(ww.value);
      const low = Number(wl.value) - width / 2;
      const lut = new Uint8ClampedArray(256);
      for (let v = 0; v < 256; v++) lut[v] = Math.round(((v - low) / width) * 255);
      const out = ctx.createImageData(original.width, original.height);
      const src = original.data;
      const dst = out.data;
      for (let i = 0; i < src.length; i += 4) {
        const g = lut[src[i]];
        dst[i] = g; dst[i + 1] = g; dst[i + 2] = g; dst[i + 3] = 255;
      }
      ctx.putImageData(out, 0, 0);
    }

    const image = new Image();
    image.onload = function () {
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      ctx.drawImage(image, 0, 0);
      original = ctx.getImageData(0, 0, canvas.width, canvas.height);
      canvas.dataset.loaded = "true";
      render();
    };
    image.onerror = function () { status.textContent = "The image could not be loaded."; };
    image.src = canvas.dataset.src;

    ww.addEventListener("input", render);
    wl.addEventListener("input", render);
    document.getElementById("wl-reset").addEventListener("click", function () {
      ww.value = 256; wl.value = 128; render();
    });
    toggle.addEventListener("change", function () {
      ww.disabled = wl.disabled = toggle.checked;
      if (!toggle.checked || overlay) { render(); return; }
      status.textContent = "Computing the Grad-CAM overlay…";
      const heat = new Image();
      heat.onload = function () {
        overlay = heat;
        status.textContent = "Grad-CAM overlay of the evidence for the predicted class (red = strongest). Not a segmentation.";
        canvas.dataset.overlay = "shown";
        render();
      };
      heat.onerror = function () {
        status.textContent = "The overlay is not available (the model version that predicted may no longer be served).";
        toggle.checked = false; ww.disabled = wl.disabled = false;
      };
      heat.src = canvas.dataset.overlaySrc;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts();
    wireDialogs();
    wireViewer();
  });
})();
