import { randomBytes, randomUUID } from 'node:crypto';
import type { ExpressionBuilder, Selectable } from 'kysely';
import type { AccessRequestsTable, Database } from '../schema.ts';
import { nowIso, type Store, toCount } from '../store.ts';
import { likeMatch } from './apps.ts';

/** One authentication event (spec §6): what the login and the proxy record. */
export interface AccessRequestEntry {
  accountId: string;
  /** `login`, `logout`, `service_token`, … */
  action: string;
  allowed: boolean;
  /** Defaults to now. */
  at?: Date;
  /** Defaults to 16 random hex characters, the shape of a Cloudflare ray id. */
  rayId?: string;
  userEmail?: string | null;
  userId?: string | null;
  ipAddress?: string | null;
  /** ISO 3166-1 alpha-2. */
  country?: string | null;
  appUid?: string | null;
  appDomain?: string | null;
  appType?: string | null;
  /** The identity provider's type, e.g. `onetimepin`, `oidc`, `github`. */
  connection?: string | null;
  idpId?: string | null;
  /** Service token, mTLS, IP or linked-token events. */
  nonIdentity?: boolean;
  serviceTokenId?: string | null;
  /** The policy decision's compact explanation (src/policy/audit-trace.ts), stored as JSON. */
  policyTrace?: object | null;
}

export type StoredAccessRequest = Selectable<AccessRequestsTable>;

type Op = 'eq' | 'neq';

/** A column compared for equality, or for difference with `op: 'neq'`. */
export interface Compared<T> {
  value: T;
  op: Op;
}

export interface AccessRequestFilter {
  action?: string;
  since?: string;
  until?: string;
  email?: { value: string; op: Op | 'contains' };
  userId?: Compared<string>;
  allowed?: Compared<boolean>;
  appUid?: Compared<string>;
  appType?: Compared<string>;
  connection?: Compared<string>;
  country?: Compared<string>;
  rayId?: Compared<string>;
  nonIdentity?: Compared<boolean>;
}

type Filterable =
  | 'user_email'
  | 'user_id'
  | 'allowed'
  | 'app_uid'
  | 'app_type'
  | 'connection'
  | 'country'
  | 'ray_id'
  | 'non_identity';

/** The access log. Append-only; the login and the proxy record, the API reads. */
export class AccessRequestRepository {
  constructor(private readonly store: Store) {}

  async record(entry: AccessRequestEntry): Promise<StoredAccessRequest> {
    const row = {
      id: randomUUID(),
      account_id: entry.accountId,
      created_at: nowIso(entry.at),
      ray_id: entry.rayId ?? randomBytes(8).toString('hex'),
      action: entry.action,
      allowed: entry.allowed ? 1 : 0,
      user_email: entry.userEmail?.toLowerCase() ?? null,
      user_id: entry.userId ?? null,
      ip_address: entry.ipAddress ?? null,
      country: entry.country?.toUpperCase() ?? null,
      app_uid: entry.appUid ?? null,
      app_domain: entry.appDomain ?? null,
      app_type: entry.appType ?? null,
      connection: entry.connection ?? null,
      idp_id: entry.idpId ?? null,
      non_identity: entry.nonIdentity ? 1 : 0,
      service_token_id: entry.serviceTokenId ?? null,
      policy_trace: entry.policyTrace ? JSON.stringify(entry.policyTrace) : null,
    };
    await this.store.db.insertInto('access_requests').values(row).execute();
    return row;
  }

  async list(
    accountId: string,
    filter: AccessRequestFilter,
    options: { direction: 'asc' | 'desc'; offset: number; limit: number },
  ): Promise<{ items: StoredAccessRequest[]; total: number }> {
    const compare = (
      eb: ExpressionBuilder<Database, 'access_requests'>,
      column: Filterable,
      compared: Compared<string | number>,
    ) =>
      compared.op === 'eq'
        ? eb(column, '=', compared.value)
        : // Rows without the field differ from any value too.
          eb.or([eb(column, '!=', compared.value), eb(column, 'is', null)]);
    const flag = (compared: Compared<boolean> | undefined) =>
      compared && { value: compared.value ? 1 : 0, op: compared.op };
    const equalities: [Filterable, Compared<string | number> | undefined][] = [
      ['user_id', filter.userId],
      ['allowed', flag(filter.allowed)],
      ['app_uid', filter.appUid],
      ['app_type', filter.appType],
      ['connection', filter.connection],
      ['country', filter.country],
      ['ray_id', filter.rayId],
      ['non_identity', flag(filter.nonIdentity)],
    ];
    let query = this.store.db.selectFrom('access_requests').where('account_id', '=', accountId);
    if (filter.action !== undefined) query = query.where('action', '=', filter.action);
    if (filter.since !== undefined) query = query.where('created_at', '>=', filter.since);
    if (filter.until !== undefined) query = query.where('created_at', '<=', filter.until);
    for (const [column, compared] of equalities) {
      if (compared !== undefined) query = query.where((eb) => compare(eb, column, compared));
    }
    if (filter.email !== undefined) {
      const { value, op } = filter.email;
      query =
        op === 'contains'
          ? query.where(likeMatch('user_email', value, false))
          : query.where((eb) => compare(eb, 'user_email', { value: value.toLowerCase(), op }));
    }
    const [rows, count] = await Promise.all([
      query
        .selectAll()
        .orderBy('created_at', options.direction)
        .orderBy('id', options.direction)
        .offset(options.offset)
        .limit(options.limit)
        .execute(),
      query.select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow(),
    ]);
    return { items: rows, total: toCount(count.n as string | number) };
  }

  /** The user's newest allowed login, for `last_seen_identity`. */
  async lastLogin(accountId: string, userId: string): Promise<StoredAccessRequest | null> {
    const row = await this.store.db
      .selectFrom('access_requests')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('user_id', '=', userId)
      .where('action', '=', 'login')
      .where('allowed', '=', 1)
      .orderBy('created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ?? null;
  }
}
