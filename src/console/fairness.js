// The fairness arithmetic of the console: a chi-square goodness-of-fit test of observed draws per
// item against the counts the published weights made expected. Pure functions, no DOM.
"use strict";

const Fairness = (() => {
  // ln Γ(x) for x > 0: the Lanczos approximation (g = 7, nine coefficients), good to ~1e-15.
  const LANCZOS = [0.99999999999980993, 676.5203681218851, -1259.1392167224028,
    771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
    9.9843695780195716e-6, 1.5056327351493116e-7];
  function lnGamma(x) {
    if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
    x -= 1;
    let a = LANCZOS[0];
    const t = x + 7.5;
    for (let i = 1; i < 9; i++) a += LANCZOS[i] / (x + i);
    return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
  }

  // Q(a, x) = Γ(a, x) / Γ(a), the regularized upper incomplete gamma function: by its power
  // series for x < a + 1 (as 1 - P), else by its continued fraction (modified Lentz).
  function gammaQ(a, x) {
    if (x <= 0) return 1;
    const front = Math.exp(-x + a * Math.log(x) - lnGamma(a));
    if (x < a + 1) {
      let term = 1 / a, sum = term;
      for (let n = 1; n < 10000 && Math.abs(term) > Math.abs(sum) * 1e-16; n++) {
        term *= x / (a + n);
        sum += term;
      }
      return Math.max(0, 1 - sum * front);
    }
    const tiny = 1e-300;
    let b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
    for (let i = 1; i < 10000; i++) {
      const an = -i * (i - a);
      b += 2;
      d = an * d + b; if (Math.abs(d) < tiny) d = tiny;
      c = b + an / c; if (Math.abs(c) < tiny) c = tiny;
      d = 1 / d;
      const delta = d * c;
      h *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    return Math.min(1, front * h);
  }

  // The chance that a chi-square variable with `dof` degrees of freedom is at least `chi2`.
  function chiSquareSurvival(chi2, dof) {
    if (dof <= 0) return NaN;
    return gammaQ(dof / 2, chi2 / 2);
  }

  // rows: [{observed, expected}]. Items expected 0 times take no part, unless drawn, which the
  // weights forbid: p = 0. Returns {chi2, dof, p, n, minExpected}; p is NaN with fewer than two
  // items or no draw.
  function test(rows) {
    let chi2 = 0, k = 0, n = 0, impossible = false, minExpected = Infinity;
    for (const r of rows) {
      n += r.observed;
      if (r.expected <= 0) {
        if (r.observed > 0) impossible = true;
        continue;
      }
      const diff = r.observed - r.expected;
      chi2 += diff * diff / r.expected;
      minExpected = Math.min(minExpected, r.expected);
      k++;
    }
    const dof = k - 1;
    let p = n > 0 && dof > 0 ? chiSquareSurvival(chi2, dof) : NaN;
    if (impossible) p = 0;
    return {chi2, dof, p, n, minExpected};
  }

  // How the console labels a result: flagged below `alpha`; too few draws when an item was
  // expected fewer than 5 times (the chi-square approximation does not hold yet).
  function verdict(result, alpha) {
    if (Number.isNaN(result.p)) return {label: "no draws", cls: ""};
    if (result.p < alpha) return {label: "significant deviation", cls: "bad"};
    if (result.minExpected < 5) return {label: "too few draws to judge", cls: "warn"};
    return {label: "consistent with the weights", cls: "ok"};
  }

  return {lnGamma, gammaQ, chiSquareSurvival, test, verdict};
})();
