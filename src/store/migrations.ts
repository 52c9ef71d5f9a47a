// In-code migrations, run by Kysely's Migrator. Each later issue appends its own migration
// (never edits a shipped one); names sort in the order they must run.
import type { Kysely, Migration, MigrationProvider } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are written against no fixed schema.
type AnyDb = Kysely<any>;

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
      .addColumn('account_id', 'varchar(32)', (c) =>
        c.notNull().references('accounts.account_id').onDelete('cascade'),
      )
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
      .addColumn('account_id', 'varchar(32)', (c) =>
        c.notNull().references('accounts.account_id').onDelete('cascade'),
      )
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
      .addColumn('account_id', 'varchar(32)', (c) =>
        c.notNull().references('accounts.account_id').onDelete('cascade'),
      )
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

/** All migrations, in order. Later issues add entries here: `'0002_apps_and_policies': …`. */
export const migrations: Record<string, Migration> = {
  '0001_foundation': foundation,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
