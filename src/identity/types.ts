// What the login pieces exchange: upstream identity providers as configured through the API and
// the identity a login proves.
import type { Identity } from '../policy/types.ts';

/** An identity provider row with its client secret decrypted (the flow needs it in clear). */
export interface IdentityProvider {
  id: string;
  name: string;
  type: string;
  /** Cloudflare's `config` object for the type, without `client_secret`. */
  config: Record<string, unknown>;
  clientSecret: string | null;
}

/** What a successful upstream login proves: always an email and the IdP that vouched for it. */
export interface LoginIdentity extends Identity {
  readonly email: string;
  readonly name?: string;
  readonly idp: { readonly id: string; readonly type: string };
}
