// Login state in the store, so any node can continue a login another began and logout ends a
// session everywhere:
// - flows: one login attempt, bound to the browser's CF_Session cookie by its hash. The flow
//   token (form field and OIDC `state`) is stored only as its SHA-256; single use.
// - sessions: the organisation session behind the team domain's CF_Authorization cookie.
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { sha256Hex } from '../keys/secrets.ts';
import type { Database } from '../store/schema.ts';
import type { Store, Tx } from '../store/store.ts';
import type { LoginIdentity } from './types.ts';

export interface LoginFlowsTable {
  id: string; // SHA-256 hex of the flow token
  account_id: string;
  browser_hash: string; // SHA-256 hex of the CF_Session cookie
  app_id: string | null; // null: a team-domain login not made for an app
  app_host: string | null; // null: the login returns to redirect_url on the team domain
  redirect_url: string;
  meta: string | null;
  ip: string;
  idp_id: string | null;
  nonce: string | null;
  pin_email: string | null;
  pin_hash: string | null; // HMAC keyed by the browser cookie, never the PIN itself
  pin_sent_at: string | null;
  pin_attempts: number;
  created_at: string;
  expires_at: string;
  consumed_at: string | null;
}

export interface LoginSessionsTable {
  id: string;
  account_id: string;
  user_id: string;
  identity: string; // JSON LoginIdentity
  identity_nonce: string;
  ip: string;
  created_at: string;
  expires_at: string;
  last_seen_at: string;
  revoked_at: string | null;
}

type LoginDatabase = Database & { login_flows: LoginFlowsTable; login_sessions: LoginSessionsTable };

export interface LoginFlow {
  id: string;
  appId: string | null;
  /** The app host the token is handed to; null when the login returns to a team-domain path. */
  appHost: string | null;
  redirectUrl: string;
  meta: string | null;
  idpId: string | null;
  nonce: string | null;
  pinEmail: string | null;
  pinHash: string | null;
  pinSentAt: string | null;
  pinAttempts: number;
  expiresAt: string;
}

export interface LoginSession {
  id: string;
  userId: string;
  identity: LoginIdentity;
  identityNonce: string;
  ip: string;
  createdAt: string;
  expiresAt: string;
  lastSeenAt: string;
  revokedAt: string | null;
}

/** A login attempt may take this long (IdP login, reading the PIN mail). */
export const FLOW_LIFETIME_MS = 30 * 60_000;

export class LoginState {
  private readonly db: Kysely<LoginDatabase>;

  constructor(
    store: Store,
    private readonly accountId: string,
  ) {
    this.db = store.db.withTables<{ login_flows: LoginFlowsTable; login_sessions: LoginSessionsTable }>();
  }

  async createFlow(input: {
    token: string;
    browser: string;
    appId: string | null;
    appHost: string | null;
    redirectUrl: string;
    meta: string | null;
    ip: string;
    now: Date;
  }): Promise<void> {
    // Expired flows are dropped as new ones arrive, so the table stays small without a timer.
    await this.db
      .deleteFrom('login_flows')
      .where('account_id', '=', this.accountId)
      .where('expires_at', '<', input.now.toISOString())
      .execute();
    await this.db
      .insertInto('login_flows')
      .values({
        id: sha256Hex(input.token),
        account_id: this.accountId,
        browser_hash: sha256Hex(input.browser),
        app_id: input.appId,
        app_host: input.appHost,
        redirect_url: input.redirectUrl,
        meta: input.meta,
        ip: input.ip,
        idp_id: null,
        nonce: null,
        pin_email: null,
        pin_hash: null,
        pin_sent_at: null,
        pin_attempts: 0,
        created_at: input.now.toISOString(),
        expires_at: new Date(input.now.getTime() + FLOW_LIFETIME_MS).toISOString(),
        consumed_at: null,
      })
      .execute();
  }

  /**
   * The live, unconsumed flow named by `token` if it belongs to this browser; null otherwise.
   * The browser check is what makes a flow token useless in another browser (login CSRF).
   */
  async findFlow(token: string, browser: string, now: Date): Promise<LoginFlow | null> {
    const row = await this.db
      .selectFrom('login_flows')
      .selectAll()
      .where('account_id', '=', this.accountId)
      .where('id', '=', sha256Hex(token))
      .where('browser_hash', '=', sha256Hex(browser))
      .where('consumed_at', 'is', null)
      .where('expires_at', '>', now.toISOString())
      .executeTakeFirst();
    if (!row) return null;
    return {
      id: row.id,
      appId: row.app_id,
      appHost: row.app_host,
      redirectUrl: row.redirect_url,
      meta: row.meta,
      idpId: row.idp_id,
      nonce: row.nonce,
      pinEmail: row.pin_email,
      pinHash: row.pin_hash,
      pinSentAt: row.pin_sent_at,
      pinAttempts: row.pin_attempts,
      expiresAt: row.expires_at,
    };
  }

  async chooseIdp(flowId: string, idpId: string, nonce: string | null): Promise<void> {
    await this.db
      .updateTable('login_flows')
      .set({ idp_id: idpId, nonce, pin_email: null, pin_hash: null, pin_sent_at: null, pin_attempts: 0 })
      .where('id', '=', flowId)
      .execute();
  }

  /** Records a PIN request; a new one replaces the previous PIN and resets the tries. */
  async setPin(flowId: string, email: string, pinHash: string | null, at: Date): Promise<void> {
    await this.db
      .updateTable('login_flows')
      .set({ pin_email: email, pin_hash: pinHash, pin_sent_at: at.toISOString(), pin_attempts: 0 })
      .where('id', '=', flowId)
      .execute();
  }

  /** PIN requests since `since` for this email, and from this address (rate limits, all nodes). */
  async pinRequestsSince(email: string, ip: string, since: Date): Promise<{ email: number; ip: number }> {
    const count = async (column: 'pin_email' | 'ip', value: string) => {
      const row = await this.db
        .selectFrom('login_flows')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('account_id', '=', this.accountId)
        .where(column, '=', value)
        .where('pin_sent_at', '>', since.toISOString())
        .executeTakeFirstOrThrow();
      return Number(row.n);
    };
    return { email: await count('pin_email', email), ip: await count('ip', ip) };
  }

  /**
   * Counts one PIN try, atomically, and returns the tries including this one; a concurrent
   * burst cannot get more than the limit past the check.
   */
  async countPinAttempt(flowId: string): Promise<number> {
    await this.db
      .updateTable('login_flows')
      .set((eb) => ({ pin_attempts: eb('pin_attempts', '+', 1) }))
      .where('id', '=', flowId)
      .execute();
    const row = await this.db
      .selectFrom('login_flows')
      .select('pin_attempts')
      .where('id', '=', flowId)
      .executeTakeFirst();
    return row?.pin_attempts ?? Number.POSITIVE_INFINITY;
  }

  /** Marks the flow used; false when another request consumed it first (replays, races). */
  async consumeFlow(flowId: string, at: Date): Promise<boolean> {
    const result = await this.db
      .updateTable('login_flows')
      .set({ consumed_at: at.toISOString(), pin_hash: null })
      .where('id', '=', flowId)
      .where('consumed_at', 'is', null)
      .executeTakeFirst();
    return result.numUpdatedRows === 1n;
  }

  async createSession(input: {
    userId: string;
    identity: LoginIdentity;
    identityNonce: string;
    ip: string;
    now: Date;
    expiresAt: Date;
  }): Promise<LoginSession> {
    const session: LoginSession = {
      id: randomUUID(),
      userId: input.userId,
      identity: input.identity,
      identityNonce: input.identityNonce,
      ip: input.ip,
      createdAt: input.now.toISOString(),
      expiresAt: input.expiresAt.toISOString(),
      lastSeenAt: input.now.toISOString(),
      revokedAt: null,
    };
    await this.db
      .insertInto('login_sessions')
      .values({
        id: session.id,
        account_id: this.accountId,
        user_id: session.userId,
        identity: JSON.stringify(session.identity),
        identity_nonce: session.identityNonce,
        ip: session.ip,
        created_at: session.createdAt,
        expires_at: session.expiresAt,
        last_seen_at: session.lastSeenAt,
        revoked_at: null,
      })
      .execute();
    return session;
  }

  async getSession(id: string): Promise<LoginSession | null> {
    const row = await this.db
      .selectFrom('login_sessions')
      .selectAll()
      .where('account_id', '=', this.accountId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toSession(row) : null;
  }

  async touchSession(id: string, at: Date): Promise<void> {
    await this.db
      .updateTable('login_sessions')
      .set({ last_seen_at: at.toISOString() })
      .where('id', '=', id)
      .execute();
  }

  /** Live sessions of a user, newest first (`users/{id}/active_sessions`). */
  async activeSessions(userId: string, now: Date): Promise<LoginSession[]> {
    const rows = await this.db
      .selectFrom('login_sessions')
      .selectAll()
      .where('account_id', '=', this.accountId)
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', now.toISOString())
      .orderBy('created_at', 'desc')
      .execute();
    return rows.map(toSession);
  }

  /** The most recent session of a user, live or not (`users/{id}/last_seen_identity`). */
  async lastSession(userId: string): Promise<LoginSession | null> {
    const row = await this.db
      .selectFrom('login_sessions')
      .selectAll()
      .where('account_id', '=', this.accountId)
      .where('user_id', '=', userId)
      .orderBy('last_seen_at', 'desc')
      .executeTakeFirst();
    return row ? toSession(row) : null;
  }
}

/**
 * Ends every organisation session of the user in the caller's transaction, beside the users
 * row's revocation instant (logout, `revoke_user`), so the rows agree with what the check in
 * src/login/org-session.ts already refuses.
 */
export async function endUserSessions(tx: Tx, accountId: string, userId: string, at: string): Promise<void> {
  await tx
    .withTables<{ login_sessions: LoginSessionsTable }>()
    .updateTable('login_sessions')
    .set({ revoked_at: at })
    .where('account_id', '=', accountId)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .execute();
}

function toSession(row: LoginSessionsTable): LoginSession {
  return {
    id: row.id,
    userId: row.user_id,
    identity: JSON.parse(row.identity) as LoginIdentity,
    identityNonce: row.identity_nonce,
    ip: row.ip,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    lastSeenAt: row.last_seen_at,
    revokedAt: row.revoked_at,
  };
}
