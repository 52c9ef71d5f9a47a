// The configuration snapshot: an immutable, in-memory copy of what the proxy, login and OIDC
// pieces read per request (account settings, apps with their policies compiled by the policy
// engine, groups, ingress rules). The hot path never waits on the database (ARCHITECTURE.md
// §1): `current()` is synchronous; the snapshot is rebuilt from the store, debounced, when the
// change feed announces a committed write, and replaced in one assignment.
import type { Kysely } from 'kysely';
import type { IngressRule } from '../config/settings.ts';
import type { Repositories } from '../gateway.ts';
import { type CompiledApp, compilePolicies, type GroupDefinition } from '../policy/index.ts';
import { loadAccessConfig, toPolicyDefinition } from '../store/access-config.ts';
import type { Change } from '../store/changes.ts';
import type { Account } from '../store/repositories/accounts.ts';
import type { SaasApp, StoredApp } from '../store/repositories/apps.ts';
import type { AttachedPolicy } from '../store/repositories/policies.ts';
import type { StoredServiceToken } from '../store/repositories/service-tokens.ts';
import type { Database } from '../store/schema.ts';
import type { Store } from '../store/store.ts';

export interface SnapshotApp {
  readonly app: StoredApp;
  /** The app's policies, ascending precedence. */
  readonly policies: readonly AttachedPolicy[];
  /**
   * The policies compiled for evaluation, or null when they did not compile (the API refuses
   * such writes, so only a database edited by hand gets here); the proxy must then deny.
   */
  readonly compiled: CompiledApp | null;
  readonly compileError: string | null;
}

export interface ConfigSnapshot {
  /** Increases by one with every rebuild. */
  readonly version: number;
  readonly builtAt: string;
  readonly account: Account;
  /** Apps, oldest first. */
  readonly apps: readonly SnapshotApp[];
  readonly appsById: ReadonlyMap<string, SnapshotApp>;
  /** OIDC SaaS apps by their client_id, for /cdn-cgi/access/sso/oidc/<client_id>/…. */
  readonly saasAppsByClientId: ReadonlyMap<string, SnapshotApp & { readonly app: SaasApp }>;
  readonly groups: ReadonlyMap<string, GroupDefinition>;
  readonly ingress: readonly IngressRule[];
  /** Service tokens by `client_id`; check a secret with verifyServiceTokenSecret (src/keys/service-token-secrets.ts). */
  readonly serviceTokens: ReadonlyMap<string, StoredServiceToken>;
  /** `revoke_user`: user id (the tokens' `sub`) → ISO time; tokens issued earlier are refused. */
  readonly userRevocations: ReadonlyMap<string, string>;
}

/**
 * Tables whose changes the snapshot reflects. A change to a list's items is announced as
 * `gateway_lists`; identity providers are read by the login from the store, not from here.
 * Of `users` the snapshot holds only revocations, so only `revoke_user` and logout announce it:
 * a login writes its user row without an announcement, as a rebuild per login would recompile
 * every app's policies for nothing (test/proxy/snapshot-caches.test.ts checks it).
 */
export const SNAPSHOT_TABLES: ReadonlySet<string> = new Set([
  'accounts',
  'apps',
  'policies',
  'app_policies',
  'access_groups',
  'ingress_rules',
  'gateway_lists',
  'service_tokens',
  'users',
]);

export type RebuildListener = (snapshot: ConfigSnapshot) => void;

export interface SnapshotOptions {
  /** Changes arriving within this window cause one rebuild. */
  debounceMs?: number;
  onError?: (error: unknown) => void;
}

type SnapshotRepos = Pick<
  Repositories,
  'accounts' | 'apps' | 'policies' | 'groups' | 'ingress' | 'lists' | 'serviceTokens' | 'users'
>;

export class ConfigSnapshots {
  private snapshot: ConfigSnapshot;
  private readonly listeners = new Set<RebuildListener>();
  private readonly unsubscribe: () => void;
  private timer: NodeJS.Timeout | null = null;
  private rebuilding: Promise<void> | null = null;
  private dirty = false;
  private closed = false;

  private constructor(
    private readonly store: Store,
    private readonly repos: SnapshotRepos,
    private readonly accountId: string,
    first: ConfigSnapshot,
    private readonly options: Required<SnapshotOptions>,
  ) {
    this.snapshot = first;
    this.unsubscribe = store.changes.subscribe((change) => this.onChange(change));
  }

  /** Builds the first snapshot from the store and starts following changes. */
  static async start(
    store: Store,
    repos: SnapshotRepos,
    accountId: string,
    options: SnapshotOptions = {},
  ): Promise<ConfigSnapshots> {
    const first = await build(store.db, repos, accountId, 1);
    return new ConfigSnapshots(store, repos, accountId, first, {
      debounceMs: options.debounceMs ?? 50,
      onError: options.onError ?? (() => {}),
    });
  }

  /** The latest snapshot. Synchronous; never touches the database. */
  current(): ConfigSnapshot {
    return this.snapshot;
  }

  /** Calls `listener` after every rebuild; returns the unsubscribe function. */
  onRebuild(listener: RebuildListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Rebuilds now (and waits), e.g. after a change made outside this process's change feed. */
  async refresh(): Promise<ConfigSnapshot> {
    this.dirty = true;
    await this.drain();
    return this.snapshot;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    this.listeners.clear();
    await this.rebuilding;
  }

  private onChange(change: Change): void {
    if (this.closed || change.accountId !== this.accountId || !SNAPSHOT_TABLES.has(change.table)) return;
    this.dirty = true;
    this.timer ??= setTimeout(() => {
      this.timer = null;
      void this.drain();
    }, this.options.debounceMs);
  }

  /** Rebuilds until no change arrived during the last build; one build at a time. */
  private async drain(): Promise<void> {
    if (this.rebuilding) return this.rebuilding;
    this.rebuilding = (async () => {
      while (this.dirty && !this.closed) {
        this.dirty = false;
        try {
          this.snapshot = await build(this.store.db, this.repos, this.accountId, this.snapshot.version + 1);
        } catch (error) {
          // Keep serving the last good snapshot; the next change (or refresh) tries again.
          this.options.onError(error);
          return;
        }
        for (const listener of this.listeners) {
          try {
            listener(this.snapshot);
          } catch (error) {
            this.options.onError(error);
          }
        }
      }
    })().finally(() => {
      this.rebuilding = null;
    });
    return this.rebuilding;
  }
}

async function build(
  db: Kysely<Database>,
  repos: SnapshotRepos,
  accountId: string,
  version: number,
): Promise<ConfigSnapshot> {
  // One read transaction, so the snapshot never mixes states from before and after a write.
  return db.transaction().execute(async (tx) => {
    const [account, config, ingress, serviceTokens, userRevocations] = await Promise.all([
      repos.accounts.get(tx),
      loadAccessConfig(repos, accountId, tx),
      repos.ingress.get(accountId, tx),
      repos.serviceTokens.listAll(accountId, tx),
      repos.users.listRevocations(accountId, tx),
    ]);
    const apps = config.apps.map((app): SnapshotApp => {
      const policies = config.appPolicies.get(app.id) ?? [];
      try {
        const compiled = compilePolicies(policies.map(toPolicyDefinition), {
          groups: config.groups.values(),
          lists: config.lists.values(),
        });
        return { app, policies, compiled, compileError: null };
      } catch (error) {
        return { app, policies, compiled: null, compileError: (error as Error).message };
      }
    });
    const saasApps = apps.filter(
      (entry): entry is SnapshotApp & { app: SaasApp } => entry.app.type === 'saas',
    );
    return deepFreeze({
      version,
      builtAt: new Date().toISOString(),
      account: account!,
      apps,
      appsById: new Map(apps.map((entry) => [entry.app.id, entry])),
      saasAppsByClientId: new Map(saasApps.map((entry) => [entry.app.clientId, entry])),
      groups: config.groups,
      ingress,
      serviceTokens: new Map(serviceTokens.map((token) => [token.clientId, token])),
      userRevocations,
    });
  });
}

/**
 * Freezes plain objects and arrays all the way down so no reader can change what another sees.
 * Maps are left as they are (they are typed ReadonlyMap) and compiled policies are the engine's.
 */
function deepFreeze<T>(value: T, seen = new Set<unknown>()): T {
  if (typeof value !== 'object' || value === null || seen.has(value)) return value;
  seen.add(value);
  if (value instanceof Map) {
    for (const entry of value.values()) deepFreeze(entry, seen);
    return value;
  }
  for (const [key, field] of Object.entries(value)) {
    if (key !== 'compiled') deepFreeze(field, seen);
  }
  return Object.freeze(value);
}
