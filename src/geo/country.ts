// The client's country, the fact the `geo` selector reads (spec §3.2 "Non-identity selectors"),
// from the sources the operator configured, off unless one is:
// - a country header (Cloudflare's `CF-IPCountry`), believed only when the socket's peer is one
//   of `trustedProxies`: any other peer could put any country in it, so from them it is ignored;
// - a MaxMind database (`geoipDatabase`, GeoLite2/GeoIP2 Country or City), in which the peer's
//   address is looked up. A trusted proxy's own address says nothing about its clients, so it is
//   never looked up: from a trusted proxy only the header counts.
// Without a source no request has a country, and the management API refuses geo rules
// (src/api/policy-validation.ts).
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { type CountryResponse, Reader } from 'maxmind';
import { ConfigError, type Settings } from '../config/settings.ts';
import { IpRangeSet, parseCidr, parseIp } from '../policy/ip.ts';

/** Answers the country of one request, upper-case ISO 3166-1 alpha-2, or undefined when unknown. */
export type CountrySource = (peerIp: string, headers: IncomingHttpHeaders) => string | undefined;

export type CountrySettings = Pick<Settings, 'trustedProxies' | 'countryHeader' | 'geoipDatabase'>;

/** Two letters; Cloudflare's `XX` (unknown) and `T1` (Tor) are not countries a rule can name. */
const COUNTRY = /^[A-Za-z]{2}$/;
const UNKNOWN = 'XX';

/** Whether requests can carry a country: the management API accepts geo rules only then. */
export function countryConfigured(settings: CountrySettings): boolean {
  return settings.countryHeader !== undefined || settings.geoipDatabase !== undefined;
}

function openDatabase(file: string): Reader<CountryResponse> {
  try {
    return new Reader<CountryResponse>(readFileSync(file));
  } catch (error) {
    throw new ConfigError(
      `cannot read geoipDatabase ${file} as a MaxMind database: ${(error as Error).message}`,
    );
  }
}

function countryCode(value: unknown): string | undefined {
  if (typeof value !== 'string' || !COUNTRY.test(value)) return undefined;
  const country = value.toUpperCase();
  return country === UNKNOWN ? undefined : country;
}

function dottedQuad(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join('.');
}

/** One source per settings object: the proxy and the login share it (a City database is large). */
const built = new WeakMap<CountrySettings, CountrySource | null>();

/** The configured source, or null when no country source is configured (geo is off). */
export function createCountrySource(settings: CountrySettings): CountrySource | null {
  if (built.has(settings)) return built.get(settings)!;
  const { trustedProxies, countryHeader, geoipDatabase } = settings;
  let source: CountrySource | null = null;
  if (countryConfigured(settings)) {
    const trusted = new IpRangeSet((trustedProxies ?? []).map((cidr) => parseCidr(cidr)!));
    const header = countryHeader?.toLowerCase();
    const database = geoipDatabase === undefined ? null : openDatabase(geoipDatabase);
    source = (peerIp, headers) => {
      const peer = parseIp(peerIp);
      if (peer === null) return undefined;
      if (trusted.has(peer)) {
        // Node joins a repeated header with ", ", which then fails the pattern: ambiguous, ignored.
        return header === undefined ? undefined : countryCode(headers[header]);
      }
      if (database === null) return undefined;
      // The reader gets a well-formed address: IPv4-mapped IPv6 is looked up as the IPv4 it is.
      const text = peer.family === 4 ? dottedQuad(peer.value) : peerIp;
      return countryCode(database.get(text)?.country?.iso_code);
    };
  }
  built.set(settings, source);
  return source;
}
