import { type Kysely, type Selectable, sql } from 'kysely';
import { AccountRows, type Page, type PageWindow, updateAccountRow } from '../account-rows.ts';
import type { AppsTable, Database } from '../schema.ts';
import { nowIso, type Store, type Tx } from '../store.ts';

/** Cloudflare's `cors_headers` object [TS: CORSHeaders]. */
export interface CorsHeaders {
  allow_all_headers: boolean;
  allow_all_methods: boolean;
  allow_all_origins: boolean;
  allow_credentials: boolean;
  allowed_headers: string[];
  allowed_methods: string[];
  allowed_origins: string[];
  max_age?: number;
}

/** Managed OAuth (spec §2.5). */
export interface OAuthConfiguration {
  enabled: boolean;
  dynamic_client_registration: {
    enabled: boolean;
    allow_any_on_localhost: boolean;
    allow_any_on_loopback: boolean;
    allowed_uris: string[];
  };
  grant: { access_token_lifetime?: string; session_duration?: string };
}

/** Fields of every app type. Optional fields are absent when not set. */
export interface CommonAppConfig {
  allowed_idps: string[];
  auto_redirect_to_identity: boolean;
  app_launcher_visible: boolean;
  logo_url?: string;
  tags: string[];
  custom_pages: string[];
}

/** A `self_hosted` app (spec §2.1). `destinations` are the public `host[/path]` patterns, the first is `domain`. */
export interface SelfHostedAppConfig extends CommonAppConfig {
  destinations: string[];
  session_duration: string;
  custom_deny_message?: string;
  custom_deny_url?: string;
  custom_non_identity_deny_url?: string;
  http_only_cookie_attribute: boolean;
  same_site_cookie_attribute: 'none' | 'lax' | 'strict';
  path_cookie_attribute: boolean;
  enable_binding_cookie: boolean;
  eager_redirect_cookie_setting: boolean;
  service_auth_401_redirect: boolean;
  read_service_tokens_from_header?: string;
  options_preflight_bypass: boolean;
  cors_headers?: CorsHeaders;
  skip_interstitial: boolean;
  allow_iframe: boolean;
  oauth_configuration?: OAuthConfiguration;
}

export interface CustomClaim {
  name: string;
  required: boolean;
  scope: 'openid' | 'email' | 'profile' | 'groups';
  source: { name: string; name_by_idp?: Record<string, string> };
}

/** `saas_app` of an OIDC SaaS app (spec §2.2), without the generated client id and secret. */
export interface OidcSaasAppConfig {
  auth_type: 'oidc';
  redirect_uris: string[];
  grant_types: ('authorization_code' | 'authorization_code_with_pkce' | 'refresh_tokens')[];
  scopes: ('openid' | 'email' | 'profile' | 'groups')[];
  allow_pkce_without_client_secret: boolean;
  access_token_lifetime: string;
  refresh_token_options: { lifetime: string };
  custom_claims: CustomClaim[];
  group_filter_regex?: string;
  app_launcher_url?: string;
}

export interface SaasAppConfig extends CommonAppConfig {
  saas_app: OidcSaasAppConfig;
}

interface StoredAppBase {
  id: string;
  accountId: string;
  aud: string;
  name: string;
  tokensRevokedAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface SelfHostedApp extends StoredAppBase {
  type: 'self_hosted';
  domain: string;
  config: SelfHostedAppConfig;
}

export interface SaasApp extends StoredAppBase {
  type: 'saas';
  config: SaasAppConfig;
  clientId: string;
  /** SHA-256 (hex) of the client secret. */
  clientSecretHash: string;
}

export type StoredApp = SelfHostedApp | SaasApp;
export type AppType = StoredApp['type'];

/** What a create or full replace writes; id, aud, client credentials and timestamps are kept by `replace`. */
export type AppContent =
  | { type: 'self_hosted'; name: string; config: SelfHostedAppConfig }
  | { type: 'saas'; name: string; config: SaasAppConfig };

export interface AppFilter {
  name?: string;
  domain?: string;
  aud?: string;
  /** Matches name or domain. */
  search?: string;
  /** Exact (case-insensitive) matches for name, domain and search instead of substrings. */
  exact?: boolean;
}

function toApp(row: Selectable<AppsTable>): StoredApp {
  const base: StoredAppBase = {
    id: row.id,
    accountId: row.account_id,
    aud: row.aud,
    name: row.name,
    tokensRevokedAt: row.tokens_revoked_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
  if (row.type === 'saas') {
    return {
      ...base,
      type: 'saas',
      config: JSON.parse(row.config) as SaasAppConfig,
      clientId: row.saas_client_id!,
      clientSecretHash: row.saas_client_secret_hash!,
    };
  }
  return {
    ...base,
    type: 'self_hosted',
    domain: row.domain!,
    config: JSON.parse(row.config) as SelfHostedAppConfig,
  };
}

function domainOf(content: AppContent): string | null {
  return content.type === 'self_hosted' ? content.config.destinations[0]! : null;
}

/**
 * A LIKE pattern for `value`, lower-cased: contained in, or equal when `exact`. `%` and `_` are
 * LIKE wildcards; a filter value matches them literally (escape `\`).
 */
function likeContains(value: string, exact: boolean): string {
  const escaped = value.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`);
  return exact ? escaped : `%${escaped}%`;
}

/**
 * `column` contains `value` (equals it when `exact`), ignoring case: lower(...) LIKE lower(...)
 * with an explicit escape, because LIKE is case-insensitive on SQLite and case-sensitive on
 * PostgreSQL. Shared by every list filter on names and emails.
 */
export function likeMatch(column: string, value: string, exact: boolean) {
  return sql<boolean>`lower(${sql.ref(column)}) like ${likeContains(value, exact)} escape '\\'`;
}

const accountRows = new AccountRows('apps', toApp);

/** Access applications. Writes take the caller's transaction so the API can add its audit row. */
export class AppRepository {
  constructor(private readonly store: Store) {}

  async get(accountId: string, id: string, db: Kysely<Database> = this.store.db): Promise<StoredApp | null> {
    return accountRows.get(db, accountId, id);
  }

  async getByClientId(clientId: string): Promise<SaasApp | null> {
    const row = await this.store.db
      .selectFrom('apps')
      .selectAll()
      .where('saas_client_id', '=', clientId)
      .executeTakeFirst();
    return row ? (toApp(row) as SaasApp) : null;
  }

  /** Every app of the account, oldest first (snapshot, cross-object checks). */
  async listAll(accountId: string, db: Kysely<Database> = this.store.db): Promise<StoredApp[]> {
    return accountRows.listAll(db, accountId);
  }

  /** One page of apps matching `filter`, oldest first, and how many match in all. */
  async list(accountId: string, filter: AppFilter, window: PageWindow): Promise<Page<StoredApp>> {
    const exact = filter.exact ?? false;
    const like = (column: 'name' | 'domain', value: string) => likeMatch(column, value, exact);
    const { name, domain, aud, search } = filter;
    return accountRows.page(this.store.db, accountId, window, (eb) => [
      name !== undefined && like('name', name),
      domain !== undefined && like('domain', domain),
      aud !== undefined && eb('aud', '=', aud.toLowerCase()),
      search !== undefined && eb.or([like('name', search), like('domain', search)]),
    ]);
  }

  async insert(
    tx: Tx,
    app: { id: string; accountId: string; aud: string; clientId?: string; clientSecretHash?: string },
    content: AppContent,
  ): Promise<void> {
    const now = nowIso();
    await tx
      .insertInto('apps')
      .values({
        id: app.id,
        account_id: app.accountId,
        aud: app.aud,
        type: content.type,
        name: content.name,
        domain: domainOf(content),
        config: JSON.stringify(content.config),
        saas_client_id: app.clientId ?? null,
        saas_client_secret_hash: app.clientSecretHash ?? null,
        tokens_revoked_at: null,
        created_at: now,
        updated_at: now,
      })
      .execute();
  }

  /**
   * Takes the app's row lock for the rest of `tx` (an UPDATE, since SQLite has no FOR UPDATE):
   * concurrent full replaces of one app then run one after the other. False when there is no app.
   */
  async lock(tx: Tx, accountId: string, id: string): Promise<boolean> {
    return updateAccountRow(tx, 'apps', accountId, id, { updated_at: nowIso() });
  }

  /** Full replace of name, domain and configuration; id, aud and client credentials stay. */
  async replace(tx: Tx, id: string, content: AppContent): Promise<void> {
    await tx
      .updateTable('apps')
      .set({
        name: content.name,
        domain: domainOf(content),
        config: JSON.stringify(content.config),
        updated_at: nowIso(),
      })
      .where('id', '=', id)
      .execute();
  }

  async revokeTokens(tx: Tx, id: string, at: string): Promise<void> {
    await tx.updateTable('apps').set({ tokens_revoked_at: at }).where('id', '=', id).execute();
  }

  /**
   * Deletes the app with its links and app-scoped policies, children first, so neither database
   * depends on the order in which it would run the cascades.
   */
  async delete(tx: Tx, id: string): Promise<void> {
    await tx.deleteFrom('app_policies').where('app_id', '=', id).execute();
    await tx.deleteFrom('policies').where('app_id', '=', id).execute();
    await tx.deleteFrom('apps').where('id', '=', id).execute();
  }
}
