// The change feed for several nodes on one PostgreSQL database (docs/deploy.md).
//
// Inside every writing transaction, `record()` bumps a per-(account, table) version in
// `change_versions` and sends `NOTIFY gatehouse_changes` with a tiny payload naming the node,
// account, table and new version — never the data. PostgreSQL delivers a NOTIFY only when its
// transaction commits, so other nodes never hear of a write that rolled back, and the version
// row commits atomically with the data.
//
// Every node LISTENs on one dedicated connection (not a pool client: a LISTEN lives as long as
// its session). Notifications can still be missed — the connection drops, a node is paused — so
// a reconcile reads the versions every few seconds and announces every (account, table) whose
// version moved without a notification. After a (re)connection everything known is announced
// once, so a node that was cut off, or whose rebuild failed while the database was away,
// resynchronises.
import { createHash, randomBytes } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import pg from 'pg';
import {
  type Change,
  type ChangeFeed,
  type ChangeListener,
  type FeedStatus,
  InProcessChangeFeed,
} from './changes.ts';
import type { Database } from './schema.ts';

export const CHANGE_CHANNEL = 'gatehouse_changes';
export const LISTEN_APPLICATION_NAME = 'gatehouse-listen';
/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; ours stay far below this bound. */
const MAX_PAYLOAD = 512;
const NAME = /^[a-z][a-z0-9_]{0,62}$/;
const ACCOUNT = /^[0-9a-f]{32}$/;

export interface FeedLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

export interface PostgresChangeFeedOptions {
  url: string;
  /** How often versions are compared to heal missed notifications. */
  reconcileMs?: number;
  /** First reconnection delay; doubles up to `maxBackoffMs`. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  log?: FeedLogger;
}

interface Payload {
  /** Node that wrote: a node ignores its own (it announced them in-process after commit). */
  n: string;
  a: string;
  t: string;
  v: number;
}

export class PostgresChangeFeed implements ChangeFeed {
  /** Random per process; names this node in notifications. */
  readonly nodeId = randomBytes(8).toString('hex');
  private readonly local = new InProcessChangeFeed();
  private readonly options: Required<Omit<PostgresChangeFeedOptions, 'log'>> & { log?: FeedLogger };
  private client: pg.Client | null = null;
  private started = false;
  private closed = false;
  private listening = false;
  private lastError: string | null = null;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private reconciling: Promise<void> | null = null;
  /** Last version seen per `account/table`; null until the first reconcile of a connection. */
  private versions: Map<string, number> | null = null;
  /** Versions this node's own writes produced, by the change list Store.write recorded. */
  private readonly own = new WeakMap<readonly Change[], Map<string, number>>();

  constructor(options: PostgresChangeFeedOptions) {
    this.options = {
      reconcileMs: 2000,
      minBackoffMs: 250,
      // Short enough that a node hears changes again within seconds of the database returning.
      maxBackoffMs: 4000,
      ...options,
    };
  }

  /** Runs inside the writing transaction: version bump and NOTIFY commit with the data. */
  async record(tx: Transaction<Database>, changes: readonly Change[]): Promise<void> {
    const versions = new Map<string, number>();
    // Version rows are locked until commit: taking them in one global order means two writes
    // touching the same tables in different orders wait for each other instead of deadlocking.
    const ordered = [...changes].sort((x, y) =>
      versionKey(x.accountId, x.table).localeCompare(versionKey(y.accountId, y.table)),
    );
    for (const change of ordered) {
      const key = versionKey(change.accountId, change.table);
      if (versions.has(key)) continue;
      const { rows } = await sql<{ version: string }>`
        insert into change_versions (account_id, table_name, version) values (${change.accountId}, ${change.table}, 1)
        on conflict (account_id, table_name) do update set version = change_versions.version + 1
        returning version`.execute(tx);
      const version = Number(rows[0]!.version);
      versions.set(key, version);
      const payload: Payload = { n: this.nodeId, a: change.accountId, t: change.table, v: version };
      await sql`select pg_notify(${CHANGE_CHANNEL}, ${JSON.stringify(payload)})`.execute(tx);
    }
    this.own.set(changes, versions);
  }

  /** After commit: this node's listeners hear of its own writes at once, without a round trip. */
  async publish(changes: readonly Change[]): Promise<void> {
    const versions = this.own.get(changes);
    if (versions) for (const [key, version] of versions) this.advance(key, version);
    await this.local.publish(changes);
  }

  /** Subscribing starts following the database, so one-shot commands never open a LISTEN. */
  subscribe(listener: ChangeListener): () => void {
    const unsubscribe = this.local.subscribe(listener);
    if (!this.started) {
      this.started = true;
      void this.connect();
      this.reconcileTimer = setInterval(() => void this.reconcile(false), this.options.reconcileMs);
      this.reconcileTimer.unref();
    }
    return unsubscribe;
  }

  status(): FeedStatus {
    if (!this.started || this.listening) return { ok: true };
    return {
      ok: false,
      reason: `not receiving change notifications from the database${this.lastError ? `: ${this.lastError}` : ''}`,
    };
  }

  /** Resolves once the first reconcile of the current connection has run (tests, start-up). */
  async ready(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!(this.listening && this.versions) && Date.now() < deadline && !this.closed) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.listening && this.versions !== null;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    await this.reconciling?.catch(() => {});
    const client = this.client;
    this.client = null;
    this.listening = false;
    await client?.end().catch(() => {});
    await this.local.close();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      connectionString: this.options.url,
      connectionTimeoutMillis: 5000,
      // Names the session in pg_stat_activity, for operators (and the tests that cut it).
      application_name: LISTEN_APPLICATION_NAME,
      // Detects a dead peer (host gone, network cut) instead of waiting for a write to fail.
      keepAlive: true,
    });
    this.client = client;
    client.on('notification', (message) => {
      if (message.channel === CHANGE_CHANNEL) this.onNotification(message.payload);
    });
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, null));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (error) {
      this.lost(client, error as Error);
      return;
    }
    if (this.closed || this.client !== client) return;
    if (this.attempt > 0 || this.lastError) {
      this.options.log?.info(
        { attempts: this.attempt },
        'database reachable again: following changes, resynchronising',
      );
    }
    this.listening = true;
    this.attempt = 0;
    this.lastError = null;
    // Everything may have changed while this node was not listening.
    this.versions = null;
    await this.reconcile(true);
  }

  /** The LISTEN connection failed or ended: reconnect with exponential backoff and jitter. */
  private lost(client: pg.Client, error: Error | null): void {
    if (this.client !== client) return;
    this.client = null;
    this.listening = false;
    client.removeAllListeners('notification');
    client.on('error', () => {});
    client.end().catch(() => {});
    if (this.closed) return;
    this.lastError = error ? describe(error) : 'connection closed';
    const base = Math.min(this.options.maxBackoffMs, this.options.minBackoffMs * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt += 1;
    this.options.log?.warn(
      { attempt: this.attempt, retryInMs: delay, error: this.lastError },
      'database unreachable: not receiving change notifications; serving from the last snapshot',
    );
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private onNotification(text: string | undefined): void {
    const payload = parsePayload(text);
    if (!payload || payload.n === this.nodeId) return;
    this.advance(versionKey(payload.a, payload.t), payload.v);
    void this.local.publish([{ table: payload.t, accountId: payload.a }]);
  }

  /**
   * Moves the seen version forward only when the new one directly follows it: a gap means a
   * notification was missed, which the next reconcile then announces.
   */
  private advance(key: string, version: number): void {
    if (!this.versions) return;
    const seen = this.versions.get(key) ?? 0;
    if (version === seen + 1) this.versions.set(key, version);
  }

  /** Compares versions with what this node has seen; with `all`, announces every one. */
  private reconcile(all: boolean): Promise<void> {
    if (this.reconciling) return this.reconciling;
    const client = this.client;
    if (!client || !this.listening) return Promise.resolve();
    this.reconciling = (async () => {
      let rows: { account_id: string; table_name: string; version: string }[];
      try {
        ({ rows } = await client.query('select account_id, table_name, version from change_versions'));
      } catch (error) {
        // A dead connection also ends the client, which reconnects; nothing else to do.
        this.lastError = describe(error as Error);
        return;
      }
      const previous = this.versions;
      const next = new Map<string, number>();
      const changed: Change[] = [];
      for (const row of rows) {
        const key = versionKey(row.account_id, row.table_name);
        const version = Number(row.version);
        next.set(key, version);
        if (all || !previous || previous.get(key) !== version) {
          changed.push({ table: row.table_name, accountId: row.account_id });
        }
      }
      this.versions = next;
      if (changed.length > 0) await this.local.publish(changed);
    })().finally(() => {
      this.reconciling = null;
    });
    return this.reconciling;
  }
}

function versionKey(accountId: string, table: string): string {
  return `${accountId}/${table}`;
}

/** Notifications are input from the database's other clients: validate before trusting. */
function parsePayload(text: string | undefined): Payload | null {
  if (!text || text.length > MAX_PAYLOAD) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const { n, a, t, v } = (value ?? {}) as Record<string, unknown>;
  if (typeof n !== 'string' || n.length > 32) return null;
  if (typeof a !== 'string' || !ACCOUNT.test(a)) return null;
  if (typeof t !== 'string' || !NAME.test(t)) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) return null;
  return { n, a, t, v };
}

function describe(error: Error): string {
  const code = (error as { code?: unknown }).code;
  return `${typeof code === 'string' ? `${code} ` : ''}${error.message || 'connection error'}`.trim();
}

/**
 * A 64-bit advisory-lock key for a name (pg_advisory_lock takes a bigint): the first 8 bytes of
 * its SHA-256, so different names do not collide in practice and every node derives the same.
 */
export function advisoryLockKey(name: string): string {
  return createHash('sha256').update(`gatehouse:${name}`).digest().readBigInt64BE(0).toString();
}
