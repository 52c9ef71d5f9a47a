// Master-key rotation (`gatehouse keys rotate-master`, docs/deploy.md): every value encrypted
// with the master key — the signing keys' private halves (src/keys/keyring.ts) and the sealed
// client secrets of upstream identity providers (src/keys/sealed.ts) — is decrypted with the old
// key and encrypted with the new one, all in one transaction. A value the old key does not open
// aborts the whole rotation, so a wrong old key changes nothing.
//
// Several nodes: the rotation holds the signing-key lock, so no node rotates a signing key in the
// middle of it, and a node still running with the old key afterwards refuses to rotate (KeyRing
// re-reads the current key under that lock and cannot open it). Running nodes keep signing and
// verifying with the keys they hold in memory until they are restarted with the new master key.
// No change is announced: a node still on the old key could not open the re-encrypted rows, so
// it keeps its cached ones until its restart.
import type { Store } from '../store/store.ts';
import { signingKeysLockName } from './keyring.ts';
import { decrypt, encrypt, type MasterKey, MasterKeyError } from './master-key.ts';
import { identityProviderSecretBinding, openSecret, sealSecret } from './sealed.ts';

export interface MasterKeyRotation {
  /** Signing keys re-encrypted. */
  signingKeys: number;
  /** Identity provider client secrets re-sealed. */
  identityProviderSecrets: number;
}

export async function rotateMasterKey(
  store: Store,
  accountId: string,
  from: MasterKey,
  to: MasterKey,
): Promise<MasterKeyRotation> {
  if (from.key.equals(to.key)) {
    throw new MasterKeyError(`the new master key (${to.source}) is the key in use (${from.source})`);
  }
  return store.withLock(signingKeysLockName(accountId), () =>
    store.write(async (tx) => {
      const keys = await tx
        .selectFrom('signing_keys')
        .select(['kid', 'private_key_encrypted'])
        .where('account_id', '=', accountId)
        .execute();
      for (const row of keys) {
        const plaintext = decrypt(from, row.private_key_encrypted, row.kid);
        await tx
          .updateTable('signing_keys')
          .set({ private_key_encrypted: encrypt(to, plaintext, row.kid) })
          .where('account_id', '=', accountId)
          .where('kid', '=', row.kid)
          .execute();
      }
      const providers = await tx
        .selectFrom('identity_providers')
        .select(['id', 'client_secret_encrypted'])
        .where('account_id', '=', accountId)
        .where('client_secret_encrypted', 'is not', null)
        .execute();
      for (const row of providers) {
        const binding = identityProviderSecretBinding(row.id);
        const secret = openSecret(from, row.client_secret_encrypted!, binding);
        await tx
          .updateTable('identity_providers')
          .set({ client_secret_encrypted: sealSecret(to, secret, binding) })
          .where('account_id', '=', accountId)
          .where('id', '=', row.id)
          .execute();
      }
      return { signingKeys: keys.length, identityProviderSecrets: providers.length };
    }),
  );
}
