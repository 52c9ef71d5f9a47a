// What the proxy writes down, off the request path: service tokens' `last_seen_at` (spec §4.5)
// and access-request log rows for non-identity authentications and refusals (spec §6). Requests
// only touch memory; a timer writes the batch, and a failed write is reported, never retried into
// a growing backlog. Rows are deduplicated per credential, app and outcome within a window, like
// Cloudflare's log records authentications rather than every request.
import type { AccessRequestEntry, AccessRequestRepository } from '../store/repositories/access-requests.ts';
import type { ServiceTokenRepository } from '../store/repositories/service-tokens.ts';
import { isDatabaseUnavailable } from '../store/store.ts';

export type ProxyAccessRequest = Omit<AccessRequestEntry, 'accountId' | 'at'>;

/** The proxy's view: two calls that never wait. */
export interface ProxyEvents {
  serviceTokenUsed(tokenId: string): void;
  /** `key` names the credential, app and outcome; `entry` is built only when not a duplicate. */
  accessRequest(key: string, entry: () => ProxyAccessRequest): void;
}

export interface RecorderOptions {
  flushEveryMs?: number;
  /** One row per key within this window. */
  dedupeWindowMs?: number;
  /** Rows held between flushes; more are dropped (and counted) rather than buffered without bound. */
  maxPending?: number;
  /** A failed write; while the database is unreachable, only the first failure of the outage. */
  onError?: (error: unknown) => void;
  /** The first write that succeeds after an outage reported through onError. */
  onRecovered?: () => void;
  now?: () => number;
}

export class ProxyRecorder implements ProxyEvents {
  private seen = new Map<string, number>();
  private rows: AccessRequestEntry[] = [];
  private readonly recent = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  /** The database was unreachable at the last write: one report per outage, not one per flush. */
  private outage = false;
  private readonly options: Required<RecorderOptions>;
  /** Rows dropped because the queue was full (the database is slower than the traffic). */
  dropped = 0;

  constructor(
    private readonly repos: {
      serviceTokens: Pick<ServiceTokenRepository, 'recordUse'>;
      accessRequests: Pick<AccessRequestRepository, 'record'>;
    },
    private readonly accountId: string,
    options: RecorderOptions = {},
  ) {
    this.options = {
      flushEveryMs: options.flushEveryMs ?? 2_000,
      dedupeWindowMs: options.dedupeWindowMs ?? 60_000,
      maxPending: options.maxPending ?? 10_000,
      onError: options.onError ?? (() => {}),
      onRecovered: options.onRecovered ?? (() => {}),
      now: options.now ?? Date.now,
    };
    this.timer = setInterval(() => void this.flush(), this.options.flushEveryMs);
    this.timer.unref();
  }

  serviceTokenUsed(tokenId: string): void {
    this.seen.set(tokenId, this.options.now());
  }

  accessRequest(key: string, entry: () => ProxyAccessRequest): void {
    const now = this.options.now();
    const last = this.recent.get(key);
    if (last !== undefined && now - last < this.options.dedupeWindowMs) return;
    if (this.rows.length >= this.options.maxPending) {
      this.dropped++;
      return;
    }
    // Keys come from verified credentials and configured apps, but stay bounded all the same.
    if (this.recent.size >= this.options.maxPending) this.recent.clear();
    this.recent.set(key, now);
    this.rows.push({ ...entry(), accountId: this.accountId, at: new Date(now) });
  }

  /** Writes what has accumulated; one flush at a time. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    await this.flush();
  }

  private async write(): Promise<void> {
    const seen = this.seen;
    const rows = this.rows;
    this.seen = new Map();
    this.rows = [];
    if (seen.size === 0 && rows.length === 0) return;
    try {
      if (seen.size > 0) {
        const iso = new Map([...seen].map(([id, at]) => [id, new Date(at).toISOString()]));
        await this.repos.serviceTokens.recordUse(iso);
      }
      for (const row of rows) await this.repos.accessRequests.record(row);
    } catch (error) {
      const unavailable = isDatabaseUnavailable(error);
      if (!(unavailable && this.outage)) this.options.onError(error);
      this.outage = unavailable;
      return;
    }
    if (this.outage) {
      this.outage = false;
      this.options.onRecovered();
    }
  }
}
