// The engine's storage (src/oidc/adapter.ts) with managed OAuth's two kinds of clients:
// - a `client_id` that is an https URL is a client ID metadata document: its metadata comes from
//   the hardened fetcher (client-metadata-document.ts), never from oidc-provider's own fetch, and
//   its redirect URIs must pass the app's allow-list like a registration's;
// - a dynamically registered client (RFC 7591) expires when unused: it is stored with a lifetime
//   that each use extends (at most once a day per process, to bound writes).
import type { Store } from '../../store/store.ts';
import { type OidcPayload, OidcStorage, type ProviderAdapter } from '../adapter.ts';
import { ClientMetadataError, type ClientMetadataFetcher } from './client-metadata-document.ts';
import {
  type DcrSettings,
  redirectUriAllowed,
  UNUSED_REGISTRATION_TTL_SECONDS,
} from './registration-policy.ts';

const TOUCH_INTERVAL_MS = 86_400_000;
const MAX_TOUCH_ENTRIES = 10_000;

export class ManagedOAuthStorage extends OidcStorage {
  private readonly touched = new Map<string, number>();

  constructor(
    store: Store,
    accountId: string,
    private readonly fetcher: ClientMetadataFetcher,
    /** The redirect-URI allow-list of the app a namespace belongs to (null: app gone). */
    private readonly settingsFor: (namespace: string) => DcrSettings | null,
    private readonly clock: () => number = Date.now,
  ) {
    super(store, accountId, clock);
  }

  override adapterFactory(namespace: string): (model: string) => ProviderAdapter {
    const base = super.adapterFactory(namespace);
    return (model) => (model === 'Client' ? this.clientAdapter(namespace, base(model)) : base(model));
  }

  private clientAdapter(namespace: string, inner: ProviderAdapter): ProviderAdapter {
    return {
      upsert: (id, payload, expiresIn) =>
        inner.upsert(id, payload, expiresIn ?? UNUSED_REGISTRATION_TTL_SECONDS),
      find: async (id) => {
        if (id.startsWith('https://') || id.startsWith('http://')) return this.documentClient(namespace, id);
        const found = await inner.find(id);
        if (found) await this.touch(namespace, id, found, inner);
        return found;
      },
      findByUid: (uid) => inner.findByUid(uid),
      findByUserCode: (code) => inner.findByUserCode(code),
      consume: (id) => inner.consume(id),
      destroy: (id) => inner.destroy(id),
      revokeByGrantId: (grantId) => inner.revokeByGrantId(grantId),
    };
  }

  /** undefined (oidc-provider answers invalid_client) when the document is refused. */
  private async documentClient(namespace: string, clientId: string): Promise<OidcPayload | undefined> {
    const settings = this.settingsFor(namespace);
    if (!settings) return undefined;
    try {
      const metadata = await this.fetcher.get(clientId);
      const redirects = metadata.redirect_uris.filter((uri) => redirectUriAllowed(uri, settings));
      if (redirects.length === 0) return undefined;
      return { ...metadata, redirect_uris: redirects };
    } catch (error) {
      if (error instanceof ClientMetadataError) return undefined;
      throw error;
    }
  }

  private async touch(
    namespace: string,
    id: string,
    payload: OidcPayload,
    inner: ProviderAdapter,
  ): Promise<void> {
    const key = `${namespace}\n${id}`;
    const now = this.clock();
    const last = this.touched.get(key);
    if (last !== undefined && now - last < TOUCH_INTERVAL_MS) return;
    if (this.touched.size >= MAX_TOUCH_ENTRIES) this.touched.delete(this.touched.keys().next().value!);
    this.touched.set(key, now);
    await inner.upsert(id, payload, UNUSED_REGISTRATION_TTL_SECONDS);
  }
}
