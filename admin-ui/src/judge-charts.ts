// The Judge screen's charts, drawn by uPlot: the effect with its interval against the
// tolerance, and the two samples' distributions. Loaded with `import()` by judge.ts.

import uPlot from "uplot";
import { el } from "./dom";
import type { Verdict } from "./api";

const TREATMENT = "#c2410c";
const CONTROL = "#0969da";
const TOLERANCE = "#b42318";
const BOUND = "#9a6700";
const ZERO = "#57606a";

/** Four significant digits: enough to read a chart's key. */
function short(value: number): string {
  return String(Number(value.toPrecision(4)));
}

function width(host: HTMLElement): number {
  return Math.min(820, Math.max(320, host.clientWidth || 640));
}

interface Marker {
  value: number;
  color: string;
  dash: number[];
  label: string;
}

/**
 * The interval as a bar, the estimate as a dot, and vertical lines at 0, at the one-sided
 * bound the verdict weighs and at the tolerance, on the worse side.
 */
export function effectChart(host: HTMLElement, verdict: Verdict, better: "lower" | "higher"): uPlot {
  const effect = verdict.effect;
  const hl = verdict.hodges_lehmann;
  const estimate = effect?.estimate ?? hl.estimate;
  // For 0/1 data the effect is a difference of rates, which the shift's interval does not
  // describe: the bar then spans the estimate to its bound.
  const [low, high] =
    effect !== undefined && effect.measure === "rate_difference"
      ? [Math.min(effect.estimate, effect.worse_bound), Math.max(effect.estimate, effect.worse_bound)]
      : hl.ci;
  const markers: Marker[] = [{ value: 0, color: ZERO, dash: [], label: "0" }];
  if (effect !== undefined) {
    // "Worse" is larger when lower is better: the tolerance stands on that side of 0.
    const tolerance = better === "lower" ? effect.tolerance : -effect.tolerance;
    markers.push({ value: tolerance, color: TOLERANCE, dash: [6, 4], label: "tolerance" });
    markers.push({ value: effect.worse_bound, color: BOUND, dash: [2, 3], label: "bound" });
  }
  const xs = [...new Set([low, estimate, high])].sort((a, b) => a - b);
  const all = [...xs, ...markers.map((marker) => marker.value)];
  const min = Math.min(...all);
  const max = Math.max(...all);
  const pad = (max - min) * 0.12 || Math.abs(max) * 0.1 || 1;
  const ratio = window.devicePixelRatio || 1;
  const chart = new uPlot(
    {
      width: width(host),
      height: 130,
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: false, range: [min - pad, max + pad] }, y: { range: [-1, 1] } },
      axes: [{}, { show: false }],
      series: [
        {},
        { label: "interval", stroke: "#1d232a", width: 6, points: { show: false } },
        {
          label: "estimate",
          stroke: "#1d232a",
          fill: "#1d232a",
          paths: () => null,
          points: { show: true, size: 12, fill: "#1d232a" },
        },
      ],
      hooks: {
        draw: [
          (u: uPlot) => {
            const ctx = u.ctx;
            const top = u.bbox.top;
            const bottom = u.bbox.top + u.bbox.height;
            ctx.save();
            ctx.font = `${12 * ratio}px system-ui, sans-serif`;
            markers.forEach((marker, index) => {
              const x = u.valToPos(marker.value, "x", true);
              ctx.strokeStyle = marker.color;
              ctx.fillStyle = marker.color;
              ctx.lineWidth = 2 * ratio;
              ctx.setLineDash(marker.dash.map((step) => step * ratio));
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, bottom);
              ctx.stroke();
              ctx.fillText(marker.label, x + 4 * ratio, top + (14 + index * 14) * ratio);
            });
            ctx.restore();
          },
        ],
      },
    },
    [xs, xs.map(() => 0), xs.map((x) => (x === estimate ? 0 : null))],
    host,
  );
  host.appendChild(
    el(
      "p",
      { class: "chart-key" },
      `Bar: the ${Math.round(hl.confidence * 1000) / 10}% interval; dot: the estimate (${short(estimate)}); `,
      effect === undefined
        ? "grey line: no difference."
        : `grey line: no difference; dotted: the one-sided bound (${short(effect.worse_bound)}); dashed: the tolerance on the worse side (${short(better === "lower" ? effect.tolerance : -effect.tolerance)}).`,
    ),
  );
  return chart;
}

/** Bin edges over both samples: the Freedman–Diaconis width, between 5 and 60 bins. */
export function edges(sorted: readonly number[]): number[] {
  const min = sorted[0] ?? 0;
  const max = sorted[sorted.length - 1] ?? 0;
  if (min === max) {
    return [min - 0.5, max + 0.5];
  }
  const quantile = (q: number) => sorted[Math.floor(q * (sorted.length - 1))] ?? min;
  const iqr = quantile(0.75) - quantile(0.25);
  const fd = iqr > 0 ? Math.ceil(((max - min) * Math.cbrt(sorted.length)) / (2 * iqr)) : Math.ceil(Math.sqrt(sorted.length));
  const count = Math.min(60, Math.max(5, fd));
  const step = (max - min) / count;
  return Array.from({ length: count + 1 }, (_, index) => (index === count ? max : min + index * step));
}

/** The share of `values` in each bin; the last bin holds its upper edge. */
export function shares(values: readonly number[], bins: readonly number[]): number[] {
  const counts = new Array<number>(bins.length - 1).fill(0);
  const min = bins[0] ?? 0;
  const step = ((bins[bins.length - 1] ?? 0) - min) / counts.length;
  for (const value of values) {
    const index = step > 0 ? Math.min(counts.length - 1, Math.max(0, Math.floor((value - min) / step))) : 0;
    counts[index] = (counts[index] ?? 0) + 1;
  }
  return counts.map((count) => count / Math.max(values.length, 1));
}

/** Both samples as step histograms over the same bins, each as shares of its own size. */
export function distributionChart(host: HTMLElement, treatment: readonly number[], control: readonly number[]): uPlot {
  const pooled = [...treatment, ...control].sort((a, b) => a - b);
  const bins = edges(pooled);
  // A step drawn from each left edge; the last edge repeats the last bin so that it shows.
  const series = [treatment, control].map((sample) => {
    const share = shares(sample, bins);
    return [...share, share[share.length - 1] ?? 0];
  });
  const stepped = uPlot.paths.stepped?.({ align: 1 });
  return new uPlot(
    {
      width: width(host),
      height: 240,
      scales: { x: { time: false }, y: { range: (_u: uPlot, _min: number, max: number) => [0, Math.max(max * 1.1, 0.01)] } },
      axes: [{}, { values: (_u: uPlot, ticks: number[]) => ticks.map((tick) => `${Math.round(tick * 1000) / 10}%`) }],
      series: [
        { label: "value" },
        { label: "Treatment", stroke: TREATMENT, fill: "rgba(194, 65, 12, 0.15)", width: 2, ...(stepped === undefined ? {} : { paths: stepped }), points: { show: false } },
        { label: "Control", stroke: CONTROL, fill: "rgba(9, 105, 218, 0.15)", width: 2, ...(stepped === undefined ? {} : { paths: stepped }), points: { show: false } },
      ],
    },
    [bins, series[0] ?? [], series[1] ?? []],
    host,
  );
}
