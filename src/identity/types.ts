// What the login pieces exchange: upstream identity providers as configured through the API,
// the identity a login proves, and the narrow views of the users and access-request stores.
// The API's part B owns those tables; these interfaces are all the login work relies on.
import type { Identity } from '../policy/types.ts';

export const IDP_TYPES = ['onetimepin', 'oidc', 'github'] as const;
export type IdpType = (typeof IDP_TYPES)[number];

/** An identity provider row with its client secret decrypted (the flow needs it in clear). */
export interface IdentityProvider {
  id: string;
  name: string;
  type: string;
  /** Cloudflare's `config` object for the type, without `client_secret`. */
  config: Record<string, unknown>;
  clientSecret: string | null;
}

export interface IdentityProviderSource {
  /** The account's identity providers, oldest first. */
  list(): Promise<IdentityProvider[]>;
}

/** What a successful upstream login proves: always an email and the IdP that vouched for it. */
export interface LoginIdentity extends Identity {
  readonly email: string;
  readonly name?: string;
  readonly idp: { readonly id: string; readonly type: string };
}

export interface LoginUser {
  id: string;
  email: string;
  /** `revoke_user` or logout: sessions and tokens issued before this instant are refused. */
  revokedAt: string | null;
}

export interface UserDirectory {
  /** Records a successful login: creates the user on first login (stable uid per email). */
  upsertOnLogin(input: { email: string; name?: string; at: string }): Promise<LoginUser>;
  get(id: string): Promise<LoginUser | null>;
  /** Sets the user's revocation instant (logout, revoke_user) and announces the change. */
  revoke(id: string, at: string): Promise<void>;
}

/** One authentication event (spec §6). */
export interface AccessRequestEntry {
  action: 'login' | 'logout';
  allowed: boolean;
  userEmail: string | null;
  userId: string | null;
  ipAddress: string;
  appUid: string | null;
  appDomain: string | null;
  appType: string | null;
  /** The IdP type, Cloudflare's `connection`, e.g. `onetimepin`. */
  connection: string | null;
  idpId: string | null;
  country: string | null;
  rayId: string;
}

export interface AccessRequestLog {
  record(entry: AccessRequestEntry): Promise<void>;
}
