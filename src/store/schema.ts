// Table types shared by SQLite and PostgreSQL. To keep one codebase for both:
// - timestamps are ISO-8601 strings written by the application (the databases' own formats differ);
// - booleans are integers 0/1 (SQLite has no boolean type);
// - structured values are JSON text.
// Every table carries account_id (ARCHITECTURE.md decision 7) so more accounts can come later.

export interface AccountsTable {
  account_id: string; // 32 hex
  name: string;
  auth_domain: string; // the team domain origin
  session_duration: string; // Go-style duration, the global session
  deny_unmatched_requests: number;
  key_rotation_interval_days: number;
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

export interface Database {
  accounts: AccountsTable;
  signing_keys: SigningKeysTable;
  api_tokens: ApiTokensTable;
  ingress_rules: IngressRulesTable;
}
