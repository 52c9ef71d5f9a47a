// oidc-provider's storage adapter on our store (SQLite or PostgreSQL), so every node of a
// PostgreSQL deployment sees the same codes, grants, refresh tokens and interactions.
//
// Secrets at rest (ARCHITECTURE.md decision 9): oidc-provider names every artefact by its own
// value (an authorization code, a refresh token, an interaction id), and the payload repeats it
// as `jti`. Rows are keyed by the SHA-256 of that value and the payload is stored without `jti`,
// which is put back from the presented value on `find`: a copy of the table yields no usable code
// or refresh token. Rows are scoped by a namespace (the app id) so one app's provider can never
// find another app's artefacts.
import type { Kysely } from 'kysely';
import { sha256Hex } from '../keys/secrets.ts';
import { type PreparedQuery, prepareQuery } from '../store/prepared-query.ts';
import type { Database } from '../store/schema.ts';
import type { Store } from '../store/store.ts';

export interface OidcPayloadsTable {
  account_id: string;
  namespace: string;
  model: string;
  /** SHA-256 hex of the artefact's value. */
  id: string;
  grant_id: string | null;
  uid: string | null;
  payload: string;
  /** Unix milliseconds; null never expires. */
  expires_at: number | string | null;
  /** Unix milliseconds of the first use (codes, rotated refresh tokens). */
  consumed_at: number | string | null;
}

type OidcDatabase = { oidc_payloads: OidcPayloadsTable };

/**
 * A rotated refresh token presented again within this window is honoured once more instead of
 * being treated as theft: a client whose refresh response was lost (timeout, two tabs racing)
 * retries with the token it still has. After the window, reuse revokes the whole grant.
 */
export const REFRESH_REUSE_GRACE_MS = 10_000;

/** Expired rows are deleted at most this often, by whichever write comes first. */
const PURGE_INTERVAL_MS = 60_000;

export type OidcPayload = Record<string, unknown> & {
  jti?: string;
  grantId?: string;
  uid?: string;
  consumed?: number;
};

/** The interface oidc-provider calls (its `Adapter` contract). */
export interface ProviderAdapter {
  upsert(id: string, payload: OidcPayload, expiresIn?: number): Promise<void>;
  find(id: string): Promise<OidcPayload | undefined>;
  findByUid(uid: string): Promise<OidcPayload | undefined>;
  findByUserCode(userCode: string): Promise<OidcPayload | undefined>;
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

type StoredRow = Pick<OidcPayloadsTable, 'payload' | 'expires_at' | 'consumed_at'>;
type RowSlot = 'namespace' | 'model' | 'id';
type WriteSlot = RowSlot | 'account_id' | 'grant_id' | 'uid' | 'payload' | 'expires_at';

export class OidcStorage {
  private readonly db: Kysely<Database & OidcDatabase>;
  private lastPurge = 0;
  // The statements of every token request (find, consume, save), compiled once (prepared-query.ts).
  private readonly findRow: PreparedQuery<RowSlot, StoredRow>;
  private readonly consumeRow: PreparedQuery<RowSlot | 'now', unknown>;
  private readonly upsertRow: PreparedQuery<WriteSlot, unknown>;
  private readonly insertRowOnce: PreparedQuery<WriteSlot, unknown>;

  constructor(
    store: Store,
    private readonly accountId: string,
    private readonly now: () => number = Date.now,
  ) {
    const db = store.db.withTables<OidcDatabase>();
    this.db = db;
    this.findRow = prepareQuery(db, (slot) =>
      db
        .selectFrom('oidc_payloads')
        .select(['payload', 'expires_at', 'consumed_at'])
        .where('namespace', '=', slot('namespace'))
        .where('model', '=', slot('model'))
        .where('id', '=', slot('id')),
    );
    this.consumeRow = prepareQuery(db, (slot) =>
      db
        .updateTable('oidc_payloads')
        .set({ consumed_at: slot('now') })
        .where('namespace', '=', slot('namespace'))
        .where('model', '=', slot('model'))
        .where('id', '=', slot('id'))
        .where('consumed_at', 'is', null),
    );
    const insert = (slot: (name: WriteSlot) => string) =>
      db.insertInto('oidc_payloads').values({
        account_id: slot('account_id'),
        namespace: slot('namespace'),
        model: slot('model'),
        id: slot('id'),
        grant_id: slot('grant_id'),
        uid: slot('uid'),
        payload: slot('payload'),
        expires_at: slot('expires_at'),
        consumed_at: null,
      });
    this.upsertRow = prepareQuery(db, (slot) =>
      insert(slot).onConflict((oc) =>
        oc.columns(['namespace', 'model', 'id']).doUpdateSet({
          grant_id: slot('grant_id'),
          uid: slot('uid'),
          payload: slot('payload'),
          expires_at: slot('expires_at'),
        }),
      ),
    );
    this.insertRowOnce = prepareQuery(db, (slot) =>
      insert(slot).onConflict((oc) => oc.columns(['namespace', 'model', 'id']).doNothing()),
    );
  }

  /** oidc-provider's `adapter` factory for one provider (one namespace). */
  adapterFactory(namespace: string): (model: string) => ProviderAdapter {
    return (model) => new ModelAdapter(this, namespace, model);
  }

  async upsert(
    namespace: string,
    model: string,
    id: string,
    payload: OidcPayload,
    expiresInSeconds?: number,
  ): Promise<void> {
    const now = this.now();
    const { jti: _jti, ...rest } = payload;
    const row = {
      account_id: this.accountId,
      namespace,
      model,
      id: sha256Hex(id),
      grant_id: typeof payload.grantId === 'string' ? payload.grantId : null,
      uid: typeof payload.uid === 'string' ? payload.uid : null,
      payload: JSON.stringify(rest),
      expires_at: expiresInSeconds ? now + expiresInSeconds * 1000 : null,
    };
    // A refresh token is saved once, at creation; its value is derived from the token it
    // rotates (src/oidc/refresh-succession.ts), so nodes racing on one rotation write the
    // same row and the first insert stands, its consumption and expiry untouched.
    await (model === 'RefreshToken' ? this.insertRowOnce : this.upsertRow).execute(row);
    if (now - this.lastPurge > PURGE_INTERVAL_MS) {
      this.lastPurge = now;
      await this.db.deleteFrom('oidc_payloads').where('expires_at', '<', now).execute();
    }
  }

  async find(namespace: string, model: string, id: string): Promise<OidcPayload | undefined> {
    const [row] = await this.findRow.execute({ namespace, model, id: sha256Hex(id) });
    return row ? this.revive(model, row, id) : undefined;
  }

  async findByUid(namespace: string, model: string, uid: string): Promise<OidcPayload | undefined> {
    const row = await this.db
      .selectFrom('oidc_payloads')
      .select(['payload', 'expires_at', 'consumed_at'])
      .where('namespace', '=', namespace)
      .where('model', '=', model)
      .where('uid', '=', uid)
      .executeTakeFirst();
    // A session found by uid has no presented value: its jti is not recoverable, which is why
    // Gatehouse never relies on oidc-provider sessions (interactions always re-check the login).
    return row ? this.revive(model, row, undefined) : undefined;
  }

  async consume(namespace: string, model: string, id: string): Promise<void> {
    await this.consumeRow.execute({ namespace, model, id: sha256Hex(id), now: this.now() });
  }

  async destroy(namespace: string, model: string, id: string): Promise<void> {
    await this.db
      .deleteFrom('oidc_payloads')
      .where('namespace', '=', namespace)
      .where('model', '=', model)
      .where('id', '=', sha256Hex(id))
      .execute();
  }

  async revokeByGrantId(namespace: string, grantId: string): Promise<void> {
    await this.db
      .deleteFrom('oidc_payloads')
      .where('namespace', '=', namespace)
      .where('grant_id', '=', grantId)
      .execute();
  }

  private revive(
    model: string,
    row: { payload: string; expires_at: number | string | null; consumed_at: number | string | null },
    id: string | undefined,
  ): OidcPayload | undefined {
    const now = this.now();
    // PostgreSQL returns bigint as a string.
    if (row.expires_at !== null && Number(row.expires_at) <= now) return undefined;
    const payload = JSON.parse(row.payload) as OidcPayload;
    if (id !== undefined) payload.jti = id;
    if (row.consumed_at !== null) {
      const consumedAt = Number(row.consumed_at);
      const inGrace = model === 'RefreshToken' && now - consumedAt <= REFRESH_REUSE_GRACE_MS;
      if (!inGrace) payload.consumed = Math.floor(consumedAt / 1000);
    }
    return payload;
  }
}

class ModelAdapter implements ProviderAdapter {
  constructor(
    private readonly storage: OidcStorage,
    private readonly namespace: string,
    private readonly model: string,
  ) {}

  upsert(id: string, payload: OidcPayload, expiresIn?: number) {
    return this.storage.upsert(this.namespace, this.model, id, payload, expiresIn);
  }
  find(id: string) {
    return this.storage.find(this.namespace, this.model, id);
  }
  findByUid(uid: string) {
    return this.storage.findByUid(this.namespace, this.model, uid);
  }
  /** Device flow is not enabled. */
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
  consume(id: string) {
    return this.storage.consume(this.namespace, this.model, id);
  }
  destroy(id: string) {
    return this.storage.destroy(this.namespace, this.model, id);
  }
  revokeByGrantId(grantId: string) {
    return this.storage.revokeByGrantId(this.namespace, grantId);
  }
}
