// What the verified-token cache (tokens.ts) and the assertion cache (assertion.ts) share: the
// account's keys and team domain, a clock, and a bounded map kept in insertion order, whose
// oldest entry goes first when it is full. Both are emptied on key rotation (proxy.ts).
import type { KeyRing } from '../keys/keyring.ts';

export abstract class TokenCache<Entry> {
  protected readonly cache = new Map<string, Entry>();

  constructor(
    protected readonly keys: KeyRing,
    protected readonly teamDomain: string,
    private readonly maxEntries = 10_000,
    protected readonly nowSeconds: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  get size(): number {
    return this.cache.size;
  }

  clear(): void {
    this.cache.clear();
  }

  protected remember(key: string, entry: Entry): void {
    // A replaced entry moves to the end; a new one makes room by dropping the oldest.
    if (!this.cache.delete(key) && this.cache.size >= this.maxEntries) {
      this.cache.delete(this.cache.keys().next().value!);
    }
    this.cache.set(key, entry);
  }
}
