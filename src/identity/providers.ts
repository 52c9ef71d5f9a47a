// The account's upstream identity providers as the login uses them: the management API's rows
// (src/api/identity-providers.ts) with the client secret opened from its seal (src/keys/sealed.ts,
// bound to the provider's id so a sealed secret cannot be moved to another provider).
import type { Gateway } from '../gateway.ts';
import { identityProviderSecretBinding, openSecret } from '../keys/sealed.ts';
import type { IdentityProvider } from './types.ts';

/** The account's identity providers, oldest first, secrets in clear (held in memory only). */
export async function listIdentityProviders(gateway: Gateway): Promise<IdentityProvider[]> {
  const rows = await gateway.repos.identityProviders.listAll(gateway.account.accountId);
  return rows.map((row) => ({
    id: row.id,
    name: row.name,
    type: row.type,
    config: row.config,
    clientSecret: row.clientSecretSealed
      ? openSecret(gateway.masterKey, row.clientSecretSealed, identityProviderSecretBinding(row.id))
      : null,
  }));
}
