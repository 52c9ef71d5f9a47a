import type { Kysely, Selectable } from 'kysely';
import type { Rule } from '../../policy/schema.ts';
import type { PolicyDecision } from '../../policy/types.ts';
import { AccountRows, type Page, type PageWindow } from '../account-rows.ts';
import type { Database, PoliciesTable } from '../schema.ts';
import { nowIso, type Store, type Tx, toCount } from '../store.ts';

export interface PolicyContent {
  name: string;
  decision: PolicyDecision;
  include: Rule[];
  exclude: Rule[];
  require: Rule[];
  sessionDuration: string | null;
}

export interface StoredPolicy extends PolicyContent {
  id: string;
  accountId: string;
  /** The owning app of an app-scoped policy; null for a reusable policy. */
  appId: string | null;
  createdAt: string;
  updatedAt: string;
}

/** A policy as one app uses it: with its precedence in that app. */
export interface AttachedPolicy extends StoredPolicy {
  precedence: number;
}

export interface PolicyLink {
  policyId: string;
  precedence: number;
}

function toPolicy(row: Selectable<PoliciesTable>): StoredPolicy {
  return {
    id: row.id,
    accountId: row.account_id,
    appId: row.app_id,
    name: row.name,
    decision: row.decision as PolicyDecision,
    include: JSON.parse(row.include) as Rule[],
    exclude: JSON.parse(row.exclude) as Rule[],
    require: JSON.parse(row.require) as Rule[],
    sessionDuration: row.session_duration,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function contentColumns(content: PolicyContent) {
  return {
    name: content.name,
    decision: content.decision,
    include: JSON.stringify(content.include),
    exclude: JSON.stringify(content.exclude),
    require: JSON.stringify(content.require),
    session_duration: content.sessionDuration,
  };
}

const accountRows = new AccountRows('policies', toPolicy);

/**
 * Access policies (reusable and app-scoped) and the app → policy links with their precedence.
 * Writes take the caller's transaction so the API can add its audit row.
 */
export class PolicyRepository {
  constructor(private readonly store: Store) {}

  async get(
    accountId: string,
    id: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<StoredPolicy | null> {
    return accountRows.get(db, accountId, id);
  }

  /** Every policy of the account, reusable and app-scoped. */
  async listAll(accountId: string, db: Kysely<Database> = this.store.db): Promise<StoredPolicy[]> {
    return accountRows.listAll(db, accountId);
  }

  /** One page of reusable policies, oldest first, each with how many apps use it. */
  async listReusable(
    accountId: string,
    window: PageWindow,
  ): Promise<Page<StoredPolicy & { appCount: number }>> {
    const page = await accountRows.page(this.store.db, accountId, window, (eb) => [eb('app_id', 'is', null)]);
    const appCounts = await this.appCounts(page.items.map((policy) => policy.id));
    return {
      items: page.items.map((policy) => ({ ...policy, appCount: appCounts.get(policy.id) ?? 0 })),
      total: page.total,
    };
  }

  /** How many apps use each of `policyIds` (one page's worth); a policy no app uses is absent. */
  private async appCounts(policyIds: readonly string[]): Promise<Map<string, number>> {
    if (policyIds.length === 0) return new Map();
    const rows = await this.store.db
      .selectFrom('app_policies')
      .select((eb) => ['policy_id', eb.fn.countAll().as('n')])
      .where('policy_id', 'in', policyIds)
      .groupBy('policy_id')
      .execute();
    return new Map(rows.map((row) => [row.policy_id, toCount(row.n as string | number)]));
  }

  /** The policies app `appId` uses, in ascending precedence. */
  async listForApp(appId: string, db: Kysely<Database> = this.store.db): Promise<AttachedPolicy[]> {
    const rows = await db
      .selectFrom('app_policies')
      .innerJoin('policies', 'policies.id', 'app_policies.policy_id')
      .selectAll('policies')
      .select('app_policies.precedence')
      .where('app_policies.app_id', '=', appId)
      .orderBy('app_policies.precedence')
      .execute();
    return rows.map((row) => ({ ...toPolicy(row), precedence: row.precedence }));
  }

  /**
   * The policies of each of `appIds`, ascending precedence, in one query per 500 apps (a page
   * of the apps list reads its policies with this instead of one query per app).
   */
  async listForApps(
    appIds: readonly string[],
    db: Kysely<Database> = this.store.db,
  ): Promise<Map<string, AttachedPolicy[]>> {
    const byApp = new Map<string, AttachedPolicy[]>(appIds.map((id) => [id, []]));
    for (let start = 0; start < appIds.length; start += 500) {
      const rows = await db
        .selectFrom('app_policies')
        .innerJoin('policies', 'policies.id', 'app_policies.policy_id')
        .selectAll('policies')
        .select(['app_policies.precedence', 'app_policies.app_id as linked_app_id'])
        .where('app_policies.app_id', 'in', appIds.slice(start, start + 500))
        .orderBy('app_policies.app_id')
        .orderBy('app_policies.precedence')
        .execute();
      for (const { linked_app_id, precedence, ...row } of rows) {
        byApp.get(linked_app_id)?.push({ ...toPolicy(row), precedence });
      }
    }
    return byApp;
  }

  /** Every link of the account (snapshot): app id → policy ids with precedence. */
  async listLinks(
    accountId: string,
    db: Kysely<Database> = this.store.db,
  ): Promise<{ appId: string; policyId: string; precedence: number }[]> {
    const rows = await db
      .selectFrom('app_policies')
      .select(['app_id', 'policy_id', 'precedence'])
      .where('account_id', '=', accountId)
      .orderBy('app_id')
      .orderBy('precedence')
      .execute();
    return rows.map((row) => ({ appId: row.app_id, policyId: row.policy_id, precedence: row.precedence }));
  }

  /** Ids of the apps that use the policy. */
  async appsUsing(policyId: string, db: Kysely<Database> = this.store.db): Promise<string[]> {
    const rows = await db
      .selectFrom('app_policies')
      .select('app_id')
      .where('policy_id', '=', policyId)
      .orderBy('app_id')
      .execute();
    return rows.map((row) => row.app_id);
  }

  async insert(
    tx: Tx,
    policy: { id: string; accountId: string; appId: string | null },
    content: PolicyContent,
  ): Promise<void> {
    const now = nowIso();
    await tx
      .insertInto('policies')
      .values({
        id: policy.id,
        account_id: policy.accountId,
        app_id: policy.appId,
        ...contentColumns(content),
        created_at: now,
        updated_at: now,
      })
      .execute();
  }

  async replace(tx: Tx, id: string, content: PolicyContent): Promise<void> {
    await tx
      .updateTable('policies')
      .set({ ...contentColumns(content), updated_at: nowIso() })
      .where('id', '=', id)
      .execute();
  }

  /** Turns an app-scoped policy into a reusable one; its link to the app stays. */
  async makeReusable(tx: Tx, id: string): Promise<void> {
    await tx
      .updateTable('policies')
      .set({ app_id: null, updated_at: nowIso() })
      .where('id', '=', id)
      .execute();
  }

  /** Deletes a policy that no app uses any more (links are removed first by the caller). */
  async delete(tx: Tx, id: string): Promise<void> {
    await tx.deleteFrom('policies').where('id', '=', id).execute();
  }

  /** Replaces the app's whole policy list. */
  async setLinks(tx: Tx, accountId: string, appId: string, links: readonly PolicyLink[]): Promise<void> {
    await tx.deleteFrom('app_policies').where('app_id', '=', appId).execute();
    if (links.length === 0) return;
    // Chunked so one statement stays under SQLite's bound-parameter limit.
    for (let start = 0; start < links.length; start += 200) {
      await tx
        .insertInto('app_policies')
        .values(
          links.slice(start, start + 200).map((link) => ({
            app_id: appId,
            policy_id: link.policyId,
            account_id: accountId,
            precedence: link.precedence,
          })),
        )
        .execute();
    }
  }

  async unlink(tx: Tx, appId: string, policyId: string): Promise<void> {
    await tx
      .deleteFrom('app_policies')
      .where('app_id', '=', appId)
      .where('policy_id', '=', policyId)
      .execute();
  }
}
