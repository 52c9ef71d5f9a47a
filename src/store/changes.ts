// Change notifications: after a write commits, the store announces which table changed so
// in-memory caches (the proxy's configuration snapshot, the key ring) can rebuild.
// This is the in-process feed. The seam for several nodes is the ChangeFeed interface: a
// PostgreSQL feed publishes with NOTIFY and delivers what LISTEN receives, from any node,
// through the same subscribe() (changes-postgres.ts).
import type { Transaction } from 'kysely';
import type { Database } from './schema.ts';

export interface Change {
  /** The table (or logical collection) that changed, e.g. `signing_keys`. */
  table: string;
  accountId: string;
  /** The row that changed, when a single one did. */
  id?: string;
}

export type ChangeListener = (change: Change) => void;

/** Whether the feed is hearing about other nodes' writes (for /readyz). */
export interface FeedStatus {
  ok: boolean;
  reason?: string;
}

export interface ChangeFeed {
  /**
   * Runs inside the writing transaction, before its commit, with the changes it recorded: a
   * feed whose announcement must commit with the data (PostgreSQL NOTIFY) does it here.
   */
  record?(tx: Transaction<Database>, changes: readonly Change[]): Promise<void>;
  /** Announces committed changes. Never called inside a transaction that may still roll back. */
  publish(changes: readonly Change[]): Promise<void>;
  /** Returns the unsubscribe function. */
  subscribe(listener: ChangeListener): () => void;
  close(): Promise<void>;
  status?(): FeedStatus;
}

export class InProcessChangeFeed implements ChangeFeed {
  private readonly listeners = new Set<ChangeListener>();

  async publish(changes: readonly Change[]): Promise<void> {
    for (const change of changes) {
      for (const listener of this.listeners) {
        try {
          listener(change);
        } catch {
          // A failing cache must not undo or block a committed write; the listener logs its own errors.
        }
      }
    }
  }

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
