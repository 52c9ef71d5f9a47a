// The login's views of tables the API's part B owns: identity providers (its repository, with
// the client secret opened from its seal), users and the access-request log. The users and log
// implementations are the narrow ones the login needs; when part B lands `upsertOnLogin` and
// `record`, the composition root passes those instead (src/login/plugin.ts `LoginDependencies`).
import { randomUUID } from 'node:crypto';
import type { MasterKey } from '../keys/master-key.ts';
import { identityProviderSecretBinding, openSecret } from '../keys/sealed.ts';
import type { IdentityProviderRepository } from '../store/repositories/identity-providers.ts';
import { isUniqueViolation, type Store } from '../store/store.ts';
import type {
  AccessRequestEntry,
  AccessRequestLog,
  IdentityProvider,
  IdentityProviderSource,
  LoginUser,
  UserDirectory,
} from './types.ts';

export function identityProviderSource(
  repository: IdentityProviderRepository,
  accountId: string,
  master: MasterKey,
): IdentityProviderSource {
  return {
    async list(): Promise<IdentityProvider[]> {
      const rows = await repository.listAll(accountId);
      return rows.map((row) => ({
        id: row.id,
        name: row.name,
        type: row.type,
        config: row.config,
        clientSecret: row.clientSecretSealed
          ? openSecret(master, row.clientSecretSealed, identityProviderSecretBinding(row.id))
          : null,
      }));
    },
  };
}

export class TableUserDirectory implements UserDirectory {
  constructor(
    private readonly store: Store,
    private readonly accountId: string,
  ) {}

  async upsertOnLogin(input: { email: string; name?: string; at: string }): Promise<LoginUser> {
    // Emails are compared lower-cased: the uid is stable per address, whatever its case (spec §4.3).
    const email = input.email.toLowerCase();
    const update = () =>
      this.store.db
        .updateTable('users')
        .set({
          last_successful_login: input.at,
          updated_at: input.at,
          ...(input.name && { name: input.name }),
        })
        .where('account_id', '=', this.accountId)
        .where('email', '=', email)
        .executeTakeFirst();
    if ((await update()).numUpdatedRows === 0n) {
      try {
        await this.store.db
          .insertInto('users')
          .values({
            id: randomUUID(),
            account_id: this.accountId,
            email,
            name: input.name ?? null,
            last_successful_login: input.at,
            revoked_at: null,
            created_at: input.at,
            updated_at: input.at,
          })
          .execute();
      } catch (error) {
        // Two first logins at once: the other one created the row; record this login on it.
        if (!isUniqueViolation(error)) throw error;
        await update();
      }
    }
    const row = await this.store.db
      .selectFrom('users')
      .select(['id', 'email', 'revoked_at'])
      .where('account_id', '=', this.accountId)
      .where('email', '=', email)
      .executeTakeFirstOrThrow();
    return { id: row.id, email: row.email, revokedAt: row.revoked_at };
  }

  async get(id: string): Promise<LoginUser | null> {
    const row = await this.store.db
      .selectFrom('users')
      .select(['id', 'email', 'revoked_at'])
      .where('account_id', '=', this.accountId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? { id: row.id, email: row.email, revokedAt: row.revoked_at } : null;
  }

  async revoke(id: string, at: string): Promise<void> {
    await this.store.write(async (tx, changed) => {
      await tx
        .updateTable('users')
        .set({ revoked_at: at, updated_at: at })
        .where('account_id', '=', this.accountId)
        .where('id', '=', id)
        .execute();
      // The proxy's revocation map follows `users` changes (decision 3).
      changed({ table: 'users', accountId: this.accountId, id });
    });
  }
}

export class TableAccessRequestLog implements AccessRequestLog {
  constructor(
    private readonly store: Store,
    private readonly accountId: string,
  ) {}

  async record(entry: AccessRequestEntry): Promise<void> {
    await this.store.db
      .insertInto('access_requests')
      .values({
        id: randomUUID(),
        account_id: this.accountId,
        created_at: new Date().toISOString(),
        ray_id: entry.rayId,
        action: entry.action,
        allowed: entry.allowed ? 1 : 0,
        user_email: entry.userEmail,
        user_id: entry.userId,
        ip_address: entry.ipAddress,
        country: entry.country,
        app_uid: entry.appUid,
        app_domain: entry.appDomain,
        app_type: entry.appType,
        connection: entry.connection,
        idp_id: entry.idpId,
        non_identity: 0,
        service_token_id: null,
      })
      .execute();
  }
}
