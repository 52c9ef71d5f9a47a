// Table types shared by SQLite and PostgreSQL. To keep one codebase for both:
// - timestamps are ISO-8601 strings written by the application (the databases' own formats differ);
// - booleans are integers 0/1 (SQLite has no boolean type);
// - structured values are JSON text.
// Every table carries account_id (ARCHITECTURE.md decision 7) so more accounts can come later.
// Columns added to an existing table with a database default are `Generated` (inserts may omit them).
import type { Generated } from 'kysely';

export interface AccountsTable {
  account_id: string; // 32 hex
  name: string;
  auth_domain: string; // the team domain origin
  session_duration: string; // Go-style duration, the global session
  deny_unmatched_requests: number;
  key_rotation_interval_days: number;
  /** Organization settings added by 0003 (`/access/organizations`, src/api/organizations.ts). */
  auto_redirect_to_identity: Generated<number>;
  is_ui_read_only: Generated<number>;
  ui_read_only_toggle_reason: Generated<string | null>;
  user_seat_expiration_inactive_time: Generated<string | null>;
  strict_service_token_auth: Generated<number>;
  login_design: Generated<string>; // JSON, cosmetic
  custom_pages: Generated<string>; // JSON, cosmetic
  /** Version of the built-in tunnel's configuration, raised by every API replace. */
  tunnel_config_version: Generated<number>;
  created_at: string;
  updated_at: string;
}

export interface SigningKeysTable {
  kid: string; // 64 hex: SHA-256 of the public key's SPKI
  account_id: string;
  /** PKCS#8 private key, AES-256-GCM under the master key, base64 of iv | tag | ciphertext. */
  private_key_encrypted: string;
  public_jwk: string; // JSON
  certificate_pem: string;
  created_at: string;
  /** When this key stopped being the current one; null while it is current. */
  retired_at: string | null;
}

export interface ApiTokensTable {
  id: string; // 32 hex
  account_id: string;
  name: string;
  /** SHA-256 (hex) of the secret: the secret has 240 bits of entropy, so no slow hash is needed. */
  secret_hash: string;
  permissions: string; // JSON array of permission group names
  status: string; // active | disabled
  expires_on: string | null;
  last_used_on: string | null;
  created_at: string;
  updated_at: string;
}

export interface IngressRulesTable {
  account_id: string;
  position: number;
  rule: string; // JSON, one cloudflared ingress rule
  updated_at: string;
}

/** Access applications (`/access/apps`). Columns that lists filter on are their own columns. */
export interface AppsTable {
  id: string; // UUID, also the app's `uid`
  account_id: string;
  aud: string; // 64 hex, immutable
  type: string; // self_hosted | saas
  name: string;
  /** Primary `host[/path]` of a self-hosted app; null for SaaS apps. */
  domain: string | null;
  /** JSON: every other field of the app object, normalised (src/api/apps-schema.ts). */
  config: string;
  /** OIDC SaaS apps: the generated client id (unique) and the SHA-256 of the client secret. */
  saas_client_id: string | null;
  saas_client_secret_hash: string | null;
  /** `revoke_tokens`: tokens and sessions issued for this app before this instant are refused. */
  tokens_revoked_at: string | null;
  created_at: string;
  updated_at: string;
}

/**
 * Access policies. A reusable policy has `app_id` null; an app-scoped ("legacy") policy belongs
 * to the one app in `app_id` and is deleted with it.
 */
export interface PoliciesTable {
  id: string; // UUID
  account_id: string;
  app_id: string | null;
  name: string;
  decision: string;
  include: string; // JSON rule arrays
  exclude: string;
  require: string;
  session_duration: string | null;
  created_at: string;
  updated_at: string;
}

/** Which policies an app uses, in which order (`precedence`, unique per app). */
export interface AppPoliciesTable {
  app_id: string;
  policy_id: string;
  account_id: string;
  precedence: number;
}

/** Access groups (`/access/groups`). */
export interface AccessGroupsTable {
  id: string; // UUID
  account_id: string;
  name: string;
  include: string; // JSON rule arrays
  exclude: string;
  require: string;
  is_default: number;
  created_at: string;
  updated_at: string;
}

/** One row per management-API write: who (token) did what to which resource, when. */
export interface ApiAuditLogTable {
  id: string; // UUID
  account_id: string;
  token_id: string;
  action: string; // the API route id, e.g. `apps.update`
  resource_type: string;
  resource_id: string;
  created_at: string;
}

/** Access service tokens (`/access/service_tokens`); secrets only as SHA-256 (decision 9). */
export interface ServiceTokensTable {
  id: string; // UUID
  account_id: string;
  name: string;
  client_id: string; // `<32 hex>.access`, unique
  secret_hash: string; // hex SHA-256 of the current secret
  /** After a rotation with a grace period: the previous secret's hash and when it stops. */
  previous_secret_hash: string | null;
  previous_secret_expires_at: string | null;
  duration: string; // Go duration or `forever`
  expires_at: string | null; // null for `forever`
  enabled: number;
  client_secret_version: number;
  created_at: string;
  updated_at: string;
  last_seen_at: string | null;
}

/** Upstream identity providers (`/access/identity_providers`). */
export interface IdentityProvidersTable {
  id: string; // UUID
  account_id: string;
  name: string;
  type: string; // onetimepin | oidc | github
  config: string; // JSON, without the client secret
  /** The client secret, AES-256-GCM under the master key (the login flow needs it in clear). */
  client_secret_encrypted: string | null;
  created_at: string;
  updated_at: string;
}

/** People who logged in (`/access/users`): one row per email per account. */
export interface UsersTable {
  id: string; // UUID: the app tokens' `sub`, stable per email per account
  account_id: string;
  email: string; // lower-cased, unique per account
  name: string | null;
  last_successful_login: string | null;
  /** `revoke_user`: tokens and sessions issued before this instant are refused. */
  revoked_at: string | null;
  created_at: string;
  updated_at: string;
}

/** Access authentication log (`/access/logs/access_requests`, spec §6). */
export interface AccessRequestsTable {
  id: string; // UUID
  account_id: string;
  created_at: string;
  ray_id: string;
  action: string; // login | logout | …
  allowed: number;
  user_email: string | null;
  user_id: string | null;
  ip_address: string | null;
  country: string | null; // ISO 3166-1 alpha-2
  app_uid: string | null;
  app_domain: string | null;
  app_type: string | null;
  connection: string | null; // the IdP type, e.g. onetimepin
  idp_id: string | null;
  non_identity: number;
  service_token_id: string | null;
  /** JSON: the decision's compact explanation (src/policy/audit-trace.ts); null when none was made. */
  policy_trace: string | null;
}

/** Zero Trust lists (`/gateway/lists`) of emails or IP ranges, named by `email_list`/`ip_list` rules. */
export interface GatewayListsTable {
  id: string; // UUID
  account_id: string;
  name: string;
  type: string; // EMAIL | IP
  description: string | null;
  created_at: string;
  updated_at: string;
}

export interface GatewayListItemsTable {
  list_id: string;
  account_id: string;
  value: string;
  description: string | null;
  created_at: string;
}

export interface Database {
  accounts: AccountsTable;
  signing_keys: SigningKeysTable;
  api_tokens: ApiTokensTable;
  ingress_rules: IngressRulesTable;
  apps: AppsTable;
  policies: PoliciesTable;
  app_policies: AppPoliciesTable;
  access_groups: AccessGroupsTable;
  api_audit_log: ApiAuditLogTable;
  service_tokens: ServiceTokensTable;
  identity_providers: IdentityProvidersTable;
  users: UsersTable;
  access_requests: AccessRequestsTable;
  gateway_lists: GatewayListsTable;
  gateway_list_items: GatewayListItemsTable;
}
