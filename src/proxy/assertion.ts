// `Cf-Access-Jwt-Assertion` tokens minted by the proxy (service tokens and linked tokens; a
// user's own app token is forwarded as it is, as Cloudflare does). An RS256 signature costs
// ~0.5 ms (stack.md §4), so each (credential, app) pair is signed once and the token reused
// until close to its expiry. Concurrent requests share one signing through the stored promise.
import type { JWTPayload } from 'jose';
import { mintJwt } from '../keys/jwt.ts';
import { TokenCache } from './token-cache.ts';

/** A cached assertion (AssertionMinter.entry). */
export type AssertionEntry = Readonly<Entry>;

interface Entry {
  token: Promise<string>;
  /** The token once signed: requests after the first use it without waiting on the promise. */
  signed: string | null;
  /** The token's `exp`. */
  expiresAt: number;
  /** Reuse until this Unix second: a margin before expiry so the origin never sees a dead token. */
  refreshAt: number;
}

export class AssertionMinter extends TokenCache<Entry> {
  /**
   * The assertion for `key`: the cached one while fresh, else one minted with `claims()` and
   * `expiresAt` (the entry's `expiresAt` is the `exp` of the token handed out).
   */
  entry(key: string, expiresAt: number, claims: () => JWTPayload): AssertionEntry {
    const now = this.nowSeconds();
    const cached = this.cache.get(key);
    if (cached && cached.refreshAt > now) return cached;
    const margin = Math.min(60, Math.floor((expiresAt - now) / 10));
    const token = mintJwt(this.keys, claims(), {
      issuer: this.teamDomain,
      expiresAt,
      now: new Date(now * 1000),
    });
    const entry: Entry = { token, signed: null, expiresAt, refreshAt: expiresAt - margin };
    this.remember(key, entry);
    token.then(
      (signed) => {
        entry.signed = signed;
      },
      // A failed signing (keys being reloaded) must not stay cached.
      () => {
        if (this.cache.get(key) === entry) this.cache.delete(key);
      },
    );
    return entry;
  }
}

/** `use(assertion)` at once when the entry's token is signed (every request after the first), else when it is. */
export function whenSigned<T>(entry: AssertionEntry, use: (assertion: string) => T): T | Promise<T> {
  return entry.signed !== null ? use(entry.signed) : entry.token.then(use);
}
