// In-code migrations, run by Kysely's Migrator. Each later issue appends its own migration
// (never edits a shipped one); names sort in the order they must run.
import type { ColumnDefinitionBuilder, Kysely, Migration, MigrationProvider } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are written against no fixed schema.
type AnyDb = Kysely<any>;

// The helpers below are shared by shipped migrations: changing one changes what those create on
// a fresh database, so they are frozen like the migrations themselves.

/** `account_id`: the owning account, whose deletion takes the row with it. */
const ownedByAccount = (c: ColumnDefinitionBuilder) =>
  c.notNull().references('accounts.account_id').onDelete('cascade');

/** A table of account-owned objects: a UUID `id` and the owning account come first. */
function createAccountTable(db: AnyDb, name: string) {
  return db.schema
    .createTable(name)
    .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
    .addColumn('account_id', 'varchar(32)', ownedByAccount);
}

/** `login_flows` as 0004 created it, and as 0006 recreated it with no app required. */
async function createLoginFlows(db: AnyDb, app: 'required' | 'optional') {
  const appColumn = (c: ColumnDefinitionBuilder) => (app === 'required' ? c.notNull() : c);
  await db.schema
    .createTable('login_flows')
    .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
    .addColumn('account_id', 'varchar(32)', ownedByAccount)
    .addColumn('browser_hash', 'varchar(64)', (c) => c.notNull())
    .addColumn('app_id', 'varchar(36)', appColumn)
    .addColumn('app_host', 'text', appColumn)
    .addColumn('redirect_url', 'text', (c) => c.notNull())
    .addColumn('meta', 'text')
    .addColumn('ip', 'text', (c) => c.notNull())
    .addColumn('idp_id', 'varchar(36)')
    .addColumn('nonce', 'text')
    .addColumn('pin_email', 'text')
    .addColumn('pin_hash', 'varchar(64)')
    .addColumn('pin_sent_at', 'text')
    .addColumn('pin_attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('consumed_at', 'text')
    .execute();
  for (const [name, column] of [
    ['login_flows_pin_email', 'pin_email'],
    ['login_flows_pin_ip', 'ip'],
  ] as const) {
    await db.schema
      .createIndex(name)
      .on('login_flows')
      .columns(['account_id', column, 'pin_sent_at'])
      .execute();
  }
}

const foundation: Migration = {
  async up(db: AnyDb) {
    await db.schema
      .createTable('accounts')
      .addColumn('account_id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('auth_domain', 'text', (c) => c.notNull())
      .addColumn('session_duration', 'text', (c) => c.notNull())
      .addColumn('deny_unmatched_requests', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('key_rotation_interval_days', 'integer', (c) => c.notNull().defaultTo(42))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('signing_keys')
      .addColumn('kid', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('account_id', 'varchar(32)', ownedByAccount)
      .addColumn('private_key_encrypted', 'text', (c) => c.notNull())
      .addColumn('public_jwk', 'text', (c) => c.notNull())
      .addColumn('certificate_pem', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('retired_at', 'text')
      .execute();
    await db.schema
      .createIndex('signing_keys_account_created')
      .on('signing_keys')
      .columns(['account_id', 'created_at'])
      .execute();

    await db.schema
      .createTable('api_tokens')
      .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('account_id', 'varchar(32)', ownedByAccount)
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('secret_hash', 'varchar(64)', (c) => c.notNull().unique())
      .addColumn('permissions', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('expires_on', 'text')
      .addColumn('last_used_on', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('ingress_rules')
      .addColumn('account_id', 'varchar(32)', ownedByAccount)
      .addColumn('position', 'integer', (c) => c.notNull())
      .addColumn('rule', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('ingress_rules_pk', ['account_id', 'position'])
      .execute();
  },
  async down(db: AnyDb) {
    for (const table of ['ingress_rules', 'api_tokens', 'signing_keys', 'accounts']) {
      await db.schema.dropTable(table).execute();
    }
  },
};

// Access applications, policies (reusable and app-scoped), their links, groups, and the
// management API's audit log.
const access: Migration = {
  async up(db: AnyDb) {
    await createAccountTable(db, 'apps')
      .addColumn('aud', 'varchar(64)', (c) => c.notNull().unique())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('domain', 'text')
      .addColumn('config', 'text', (c) => c.notNull())
      .addColumn('saas_client_id', 'varchar(64)', (c) => c.unique())
      .addColumn('saas_client_secret_hash', 'varchar(64)')
      .addColumn('tokens_revoked_at', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('apps_account_created')
      .on('apps')
      .columns(['account_id', 'created_at'])
      .execute();

    await createAccountTable(db, 'policies')
      // An app-scoped policy lives and dies with its app.
      .addColumn('app_id', 'varchar(36)', (c) => c.references('apps.id').onDelete('cascade'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('decision', 'text', (c) => c.notNull())
      .addColumn('include', 'text', (c) => c.notNull())
      .addColumn('exclude', 'text', (c) => c.notNull())
      .addColumn('require', 'text', (c) => c.notNull())
      .addColumn('session_duration', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('policies_account_app')
      .on('policies')
      .columns(['account_id', 'app_id'])
      .execute();

    await db.schema
      .createTable('app_policies')
      .addColumn('app_id', 'varchar(36)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
      // No cascade: a policy still attached to an app cannot be deleted (the API refuses first),
      // because silently dropping a Block policy would widen access.
      .addColumn('policy_id', 'varchar(36)', (c) => c.notNull().references('policies.id'))
      .addColumn('account_id', 'varchar(32)', ownedByAccount)
      .addColumn('precedence', 'integer', (c) => c.notNull())
      .addPrimaryKeyConstraint('app_policies_pk', ['app_id', 'policy_id'])
      .addUniqueConstraint('app_policies_precedence', ['app_id', 'precedence'])
      .execute();
    await db.schema.createIndex('app_policies_policy').on('app_policies').column('policy_id').execute();

    await createAccountTable(db, 'access_groups')
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('include', 'text', (c) => c.notNull())
      .addColumn('exclude', 'text', (c) => c.notNull())
      .addColumn('require', 'text', (c) => c.notNull())
      .addColumn('is_default', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();

    await createAccountTable(db, 'api_audit_log')
      .addColumn('token_id', 'varchar(32)', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('resource_type', 'text', (c) => c.notNull())
      .addColumn('resource_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('api_audit_log_account_created')
      .on('api_audit_log')
      .columns(['account_id', 'created_at'])
      .execute();
  },
  async down(db: AnyDb) {
    for (const table of ['api_audit_log', 'access_groups', 'app_policies', 'policies', 'apps']) {
      await db.schema.dropTable(table).execute();
    }
  },
};

// Service tokens, identity providers, users, the access log, Zero Trust lists, and the
// organization settings and tunnel version on the account (API issue, part B).
const credentialsDirectory: Migration = {
  async up(db: AnyDb) {
    // SQLite's ALTER TABLE adds one column per statement.
    for (const [name, type, value] of [
      ['auto_redirect_to_identity', 'integer', 0],
      ['is_ui_read_only', 'integer', 0],
      ['strict_service_token_auth', 'integer', 0],
      ['tunnel_config_version', 'integer', 0],
      ['login_design', 'text', '{}'],
      ['custom_pages', 'text', '{}'],
    ] as const) {
      await db.schema
        .alterTable('accounts')
        .addColumn(name, type, (c) => c.notNull().defaultTo(value))
        .execute();
    }
    for (const name of ['ui_read_only_toggle_reason', 'user_seat_expiration_inactive_time']) {
      await db.schema.alterTable('accounts').addColumn(name, 'text').execute();
    }

    await createAccountTable(db, 'service_tokens')
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('client_id', 'varchar(64)', (c) => c.notNull().unique())
      .addColumn('secret_hash', 'varchar(64)', (c) => c.notNull())
      .addColumn('previous_secret_hash', 'varchar(64)')
      .addColumn('previous_secret_expires_at', 'text')
      .addColumn('duration', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text')
      .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('client_secret_version', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('last_seen_at', 'text')
      .execute();
    await db.schema
      .createIndex('service_tokens_account_created')
      .on('service_tokens')
      .columns(['account_id', 'created_at'])
      .execute();

    await createAccountTable(db, 'identity_providers')
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('config', 'text', (c) => c.notNull())
      .addColumn('client_secret_encrypted', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();

    await createAccountTable(db, 'users')
      .addColumn('email', 'text', (c) => c.notNull())
      .addColumn('name', 'text')
      .addColumn('last_successful_login', 'text')
      .addColumn('revoked_at', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('users_account_email', ['account_id', 'email'])
      .execute();

    await createAccountTable(db, 'access_requests')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('ray_id', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('allowed', 'integer', (c) => c.notNull())
      .addColumn('user_email', 'text')
      .addColumn('user_id', 'varchar(36)')
      .addColumn('ip_address', 'text')
      .addColumn('country', 'varchar(2)')
      .addColumn('app_uid', 'varchar(36)')
      .addColumn('app_domain', 'text')
      .addColumn('app_type', 'text')
      .addColumn('connection', 'text')
      .addColumn('idp_id', 'varchar(36)')
      .addColumn('non_identity', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('service_token_id', 'varchar(36)')
      .execute();
    await db.schema
      .createIndex('access_requests_account_created')
      .on('access_requests')
      .columns(['account_id', 'created_at'])
      .execute();
    await db.schema
      .createIndex('access_requests_account_email')
      .on('access_requests')
      .columns(['account_id', 'user_email'])
      .execute();

    await createAccountTable(db, 'gateway_lists')
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('description', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('gateway_list_items')
      .addColumn('list_id', 'varchar(36)', (c) =>
        c.notNull().references('gateway_lists.id').onDelete('cascade'),
      )
      .addColumn('account_id', 'varchar(32)', ownedByAccount)
      .addColumn('value', 'text', (c) => c.notNull())
      .addColumn('description', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('gateway_list_items_pk', ['list_id', 'value'])
      .execute();
  },
  async down(db: AnyDb) {
    for (const table of [
      'gateway_list_items',
      'gateway_lists',
      'access_requests',
      'users',
      'identity_providers',
      'service_tokens',
    ]) {
      await db.schema.dropTable(table).execute();
    }
    for (const column of [
      'auto_redirect_to_identity',
      'is_ui_read_only',
      'strict_service_token_auth',
      'tunnel_config_version',
      'login_design',
      'custom_pages',
      'ui_read_only_toggle_reason',
      'user_seat_expiration_inactive_time',
    ]) {
      await db.schema.alterTable('accounts').dropColumn(column).execute();
    }
  },
};

// Issue 6: the team domain's login state. Flows are short-lived (one login attempt: chosen IdP,
// OIDC nonce, one-time PIN hash and tries); sessions are the organisation sessions behind the
// team domain's CF_Authorization cookie, kept so logout and revocation can end them.
const login: Migration = {
  async up(db: AnyDb) {
    await createLoginFlows(db, 'required');

    await createAccountTable(db, 'login_sessions')
      .addColumn('user_id', 'varchar(36)', (c) => c.notNull().references('users.id').onDelete('cascade'))
      .addColumn('identity', 'text', (c) => c.notNull())
      .addColumn('identity_nonce', 'varchar(64)', (c) => c.notNull())
      .addColumn('ip', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('last_seen_at', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text')
      .execute();
    await db.schema
      .createIndex('login_sessions_user')
      .on('login_sessions')
      .columns(['account_id', 'user_id', 'expires_at'])
      .execute();
  },
  async down(db: AnyDb) {
    await db.schema.dropTable('login_sessions').execute();
    await db.schema.dropTable('login_flows').execute();
  },
};

/** Issue 7: oidc-provider's artefacts for the SaaS apps' OIDC providers (src/oidc/adapter.ts). */
const oidcProvider: Migration = {
  async up(db: AnyDb) {
    await db.schema
      .createTable('oidc_payloads')
      .addColumn('account_id', 'varchar(32)', ownedByAccount)
      .addColumn('namespace', 'varchar(64)', (c) => c.notNull())
      .addColumn('model', 'varchar(40)', (c) => c.notNull())
      .addColumn('id', 'varchar(64)', (c) => c.notNull())
      .addColumn('grant_id', 'varchar(128)')
      .addColumn('uid', 'varchar(128)')
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'bigint')
      .addColumn('consumed_at', 'bigint')
      .addPrimaryKeyConstraint('oidc_payloads_pk', ['namespace', 'model', 'id'])
      .execute();
    await db.schema
      .createIndex('oidc_payloads_grant')
      .on('oidc_payloads')
      .columns(['namespace', 'grant_id'])
      .execute();
    await db.schema
      .createIndex('oidc_payloads_uid')
      .on('oidc_payloads')
      .columns(['namespace', 'model', 'uid'])
      .execute();
    await db.schema.createIndex('oidc_payloads_expires').on('oidc_payloads').column('expires_at').execute();
  },
  async down(db: AnyDb) {
    await db.schema.dropTable('oidc_payloads').execute();
  },
};

// Issue 6: a login may end on a team-domain path (the SaaS apps' OIDC authorize step,
// src/login/org-session.ts) instead of handing an app token to an app host, so a flow may have
// no app host and no app. SQLite cannot drop NOT NULL in place; flows live 30 minutes, so the
// table is recreated empty (an upgrade restarts the logins in progress).
const loginTeamReturn: Migration = {
  async up(db: AnyDb) {
    await db.schema.dropTable('login_flows').execute();
    await createLoginFlows(db, 'optional');
  },
  async down(db: AnyDb) {
    // Back to 0004's tables, empty: logins in progress restart and everyone signs in again.
    await db.schema.dropTable('login_flows').execute();
    await db.schema.dropTable('login_sessions').execute();
    await login.up(db);
  },
};

// Issue 9: one version per (account, table), bumped in every write's transaction, so nodes on
// one PostgreSQL database can tell which caches a missed NOTIFY left stale (changes-postgres.ts).
const changeVersions: Migration = {
  async up(db: AnyDb) {
    await db.schema
      .createTable('change_versions')
      .addColumn('account_id', 'varchar(32)', (c) => c.notNull())
      .addColumn('table_name', 'varchar(63)', (c) => c.notNull())
      .addColumn('version', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('change_versions_pk', ['account_id', 'table_name'])
      .execute();
  },
  async down(db: AnyDb) {
    await db.schema.dropTable('change_versions').execute();
  },
};

// Issue 3: the explanation of each logged decision (src/policy/audit-trace.ts), as JSON.
const accessRequestPolicyTrace: Migration = {
  async up(db: AnyDb) {
    await db.schema.alterTable('access_requests').addColumn('policy_trace', 'text').execute();
  },
  async down(db: AnyDb) {
    await db.schema.alterTable('access_requests').dropColumn('policy_trace').execute();
  },
};

/** All migrations, in order. Later issues add entries here: `'0003_<name>': …`. */
export const migrations: Record<string, Migration> = {
  '0001_foundation': foundation,
  '0002_access': access,
  '0003_credentials_directory': credentialsDirectory,
  '0004_login': login,
  '0005_oidc_provider': oidcProvider,
  '0006_login_team_return': loginTeamReturn,
  '0007_change_versions': changeVersions,
  '0008_access_request_policy_trace': accessRequestPolicyTrace,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
