// The key ring: the account's current signing key and the previous one, held in memory so
// signing and verifying never wait on the database. It reloads when the store announces a
// change to signing_keys (a rotation here, through the API, or on another node).
//
// Several nodes (docs/deploy.md): rotation runs under a cluster-wide lock and re-checks whether
// it is still due inside it, so it happens once. A new key is published at once but, with an
// activation delay, signs only once that delay has passed since its creation; until then the
// previous key keeps signing. Every node hears of the rotation within about a second (change
// feed) or at the next reconcile, well inside the delay, so no node ever receives a token signed
// by a key it does not publish yet, and neither does a relying party reading its certs.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import type { SigningKeyRepository, StoredSigningKey } from '../store/repositories/signing-keys.ts';
import type { Store } from '../store/store.ts';
import { generateSigningKey } from './generate.ts';
import { decrypt, encrypt, type MasterKey } from './master-key.ts';

/** Cloudflare honours the previous key for 7 days after a rotation (spec §4.4). */
export const PREVIOUS_KEY_GRACE_MS = 7 * 86_400_000;

export interface PublicKeyEntry {
  kid: string;
  key: KeyObject;
  jwk: Record<string, string>;
  certificatePem: string;
}

export interface CertsDocument {
  keys: Record<string, string>[];
  public_cert: { kid: string; cert: string };
  public_certs: { kid: string; cert: string }[];
}

/**
 * The cluster-wide lock every write of an account's encrypted signing keys holds: rotations
 * here, and master-key rotation (src/keys/master-key-rotation.ts).
 */
export function signingKeysLockName(accountId: string): string {
  return `signing_keys:${accountId}`;
}

export class KeyRing {
  private current: (PublicKeyEntry & { privateKey: KeyObject; createdAt: string }) | null = null;
  /** The previous key's signer, used while the current key is younger than the activation delay. */
  private previousSigner: { kid: string; key: KeyObject } | null = null;
  private activationDelayMs = 0;
  private published: PublicKeyEntry[] = [];
  private readonly listeners = new Set<() => void>();
  private unsubscribe: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private loadedKids = '';

  constructor(
    private readonly store: Store,
    private readonly keys: SigningKeyRepository,
    private readonly accountId: string,
    private readonly master: MasterKey,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Loads the keys (creating the first one on a new database) and follows later changes:
   * change notifications from this process, plus a periodic re-read that also picks up a
   * `gatehouse keys rotate` run from another process, and rotation when the interval is up.
   */
  async start(
    options: {
      refreshMs?: number;
      rotationIntervalDays?: () => Promise<number>;
      /** How long a new key is published before it signs (several nodes; 0 signs at once). */
      activationDelayMs?: number;
    } = {},
  ): Promise<void> {
    this.activationDelayMs = options.activationDelayMs ?? 0;
    // Under the lock, so nodes starting together on a new database create one first key.
    await this.store.withLock(this.lockName(), async () => {
      if ((await this.keys.count(this.accountId)) === 0) await this.rotateNow();
      else await this.reload();
    });
    this.unsubscribe = this.store.changes.subscribe((change) => {
      if (change.table === 'signing_keys' && change.accountId === this.accountId) {
        this.reload().catch(() => {
          // Keep serving with the keys already loaded; the next change or rotation retries.
        });
      }
    });
    const { refreshMs, rotationIntervalDays } = options;
    if (refreshMs) {
      this.timer = setInterval(() => {
        const due = rotationIntervalDays
          ? rotationIntervalDays().then((days) => this.rotateIfDue(days))
          : Promise.resolve(null);
        due.then((rotated) => (rotated ? undefined : this.reload())).catch(() => {});
      }, refreshMs);
      this.timer.unref();
    }
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Called after every reload (e.g. to empty verified-token caches on rotation). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async reload(): Promise<void> {
    const rows = await this.keys.list(this.accountId);
    const now = this.now().getTime();
    const currentRow = rows.find((row) => row.retired_at === null);
    if (!currentRow) throw new Error(`account ${this.accountId} has no current signing key`);
    // The newest retired key, while inside its grace period, is the one previous key published.
    const previousRow = rows.find(
      (row) => row.retired_at !== null && now - Date.parse(row.retired_at) < PREVIOUS_KEY_GRACE_MS,
    );
    const privateKey = createPrivateKey({
      key: decrypt(this.master, currentRow.private_key_encrypted, currentRow.kid),
      format: 'der',
      type: 'pkcs8',
    });
    const currentEntry = toPublicEntry(currentRow);
    this.current = { ...currentEntry, privateKey, createdAt: currentRow.created_at };
    this.previousSigner =
      previousRow && this.activationDelayMs > 0
        ? {
            kid: previousRow.kid,
            key: createPrivateKey({
              key: decrypt(this.master, previousRow.private_key_encrypted, previousRow.kid),
              format: 'der',
              type: 'pkcs8',
            }),
          }
        : null;
    this.published = previousRow ? [currentEntry, toPublicEntry(previousRow)] : [currentEntry];
    const kids = this.published.map((entry) => entry.kid).join(',');
    if (kids !== this.loadedKids) {
      this.loadedKids = kids;
      for (const listener of this.listeners) listener();
    }
  }

  /**
   * Generates a new current key; the old one becomes the previous key for 7 days. Serialised
   * with rotations on other nodes by the cluster-wide lock.
   */
  async rotate(): Promise<string> {
    return this.store.withLock(this.lockName(), async () => {
      // Re-reading decrypts the stored current key: a node still holding a master key that has
      // since been rotated (`gatehouse keys rotate-master`) fails here instead of writing a new
      // key the other nodes cannot open. rotateIfDue re-reads for the same reason.
      await this.reload();
      return this.rotateNow();
    });
  }

  private async rotateNow(): Promise<string> {
    const now = this.now();
    const generated = await generateSigningKey(now, `Gatehouse ${this.accountId}`);
    const row: StoredSigningKey = {
      kid: generated.kid,
      account_id: this.accountId,
      private_key_encrypted: encrypt(this.master, generated.privateKeyPkcs8, generated.kid),
      public_jwk: JSON.stringify(generated.publicJwk),
      certificate_pem: generated.certificatePem,
      created_at: now.toISOString(),
      retired_at: null,
    };
    await this.keys.rotate(row, now.toISOString());
    await this.keys.deleteRetiredBefore(
      this.accountId,
      new Date(now.getTime() - PREVIOUS_KEY_GRACE_MS).toISOString(),
    );
    await this.reload();
    return generated.kid;
  }

  /** Rotates when the current key is older than the interval; returns the new kid if it did. */
  async rotateIfDue(intervalDays: number): Promise<string | null> {
    const due = () =>
      this.now().getTime() - Date.parse(this.requireCurrent().createdAt) >= intervalDays * 86_400_000;
    if (!due()) return null;
    // Another node may have rotated since this one last loaded: look again under the lock.
    return this.store.withLock(this.lockName(), async () => {
      await this.reload();
      return due() ? this.rotateNow() : null;
    });
  }

  /** The key that signs now: the previous one while the current is inside its activation delay. */
  signingKey(): { kid: string; key: KeyObject } {
    const current = this.requireCurrent();
    if (
      this.previousSigner &&
      this.now().getTime() - Date.parse(current.createdAt) < this.activationDelayMs
    ) {
      return this.previousSigner;
    }
    return { kid: current.kid, key: current.privateKey };
  }

  /** The key for a kid among the published ones (current and previous within its grace). */
  verificationKey(kid: string): KeyObject | null {
    return this.published.find((entry) => entry.kid === kid)?.key ?? null;
  }

  lastRotationAt(): string {
    return this.requireCurrent().createdAt;
  }

  /** `GET /cdn-cgi/access/certs` in Cloudflare's shape (spec §4.4). */
  certs(): CertsDocument {
    const current = this.requireCurrent();
    return {
      keys: this.published.map((entry) => entry.jwk),
      public_cert: { kid: current.kid, cert: current.certificatePem },
      public_certs: this.published.map((entry) => ({ kid: entry.kid, cert: entry.certificatePem })),
    };
  }

  private lockName(): string {
    return signingKeysLockName(this.accountId);
  }

  private requireCurrent() {
    if (!this.current) throw new Error('the key ring has not been started');
    return this.current;
  }
}

function toPublicEntry(row: StoredSigningKey): PublicKeyEntry {
  const jwk = JSON.parse(row.public_jwk) as Record<string, string>;
  return {
    kid: row.kid,
    jwk,
    key: createPublicKey({ key: jwk, format: 'jwk' }),
    certificatePem: row.certificate_pem,
  };
}
