// Go `time.ParseDuration` syntax, which Cloudflare uses for `session_duration`: "Must be in the
// format 300ms or 2h45m. Valid time units are: ns, us (or µs), ms, s, m, h" [TS: policies.ts].
// Signed durations are refused: a negative session length means nothing.

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3, // U+00B5 MICRO SIGN
  μs: 1e-3, // U+03BC GREEK SMALL LETTER MU, which Go accepts too
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const TERM = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/** Milliseconds in a Go duration such as "24h" or "1h30m15.5s"; null when the text is not one. */
export function parseGoDuration(text: string): number | null {
  if (text === '0') return 0;
  if (text === '') return null;
  let total = 0;
  TERM.lastIndex = 0;
  while (TERM.lastIndex < text.length) {
    const match = TERM.exec(text);
    if (match === null) return null;
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
  }
  return total;
}
