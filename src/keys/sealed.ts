// Secrets Gatehouse must use in clear later, such as an upstream identity provider's OAuth
// client secret (the login flow sends it to the IdP's token endpoint), cannot be stored as
// hashes (ARCHITECTURE.md decision 9 covers secrets Gatehouse only checks). They are sealed
// with the master key instead, AES-256-GCM like the signing keys, and bound to their row so a
// sealed value copied onto another row does not open.
import { decrypt, encrypt, type MasterKey, MasterKeyError } from './master-key.ts';

/** What a sealed identity provider client secret is bound to. */
export function identityProviderSecretBinding(providerId: string): string {
  return `identity_providers/${providerId}/client_secret`;
}

export function sealSecret(master: MasterKey, plaintext: string, binding: string): string {
  return encrypt(master, Buffer.from(plaintext, 'utf8'), binding);
}

export function openSecret(master: MasterKey, sealed: string, binding: string): string {
  try {
    return decrypt(master, sealed, binding).toString('utf8');
  } catch (error) {
    if (!(error instanceof MasterKeyError)) throw error;
    throw new MasterKeyError(
      `the master key from ${master.source} does not open ${binding}: it is not the key the secret was sealed with`,
    );
  }
}
