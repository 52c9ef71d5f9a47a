// Opens the pieces every command needs, in order: store (migrated), account, master key,
// key ring. Each failure stops start-up with a message that says what to do.
import type { Settings } from './config/settings.ts';
import { KeyRing } from './keys/keyring.ts';
import { loadMasterKey, type MasterKey } from './keys/master-key.ts';
import type { Logger } from './logging.ts';
import { ConfigSnapshots } from './snapshot/snapshot.ts';
import type { ChangeFeed } from './store/changes.ts';
import { AccessRequestRepository } from './store/repositories/access-requests.ts';
import { type Account, AccountRepository } from './store/repositories/accounts.ts';
import { ApiTokenRepository } from './store/repositories/api-tokens.ts';
import { AppRepository } from './store/repositories/apps.ts';
import { AuditLogRepository } from './store/repositories/audit-log.ts';
import { GatewayListRepository } from './store/repositories/gateway-lists.ts';
import { GroupRepository } from './store/repositories/groups.ts';
import { IdentityProviderRepository } from './store/repositories/identity-providers.ts';
import { IngressRepository } from './store/repositories/ingress.ts';
import { PolicyRepository } from './store/repositories/policies.ts';
import { ServiceTokenRepository } from './store/repositories/service-tokens.ts';
import { SigningKeyRepository } from './store/repositories/signing-keys.ts';
import { UserRepository } from './store/repositories/users.ts';
import { isDatabaseUnavailable, Store, StoreError } from './store/store.ts';

export interface Repositories {
  accounts: AccountRepository;
  signingKeys: SigningKeyRepository;
  apiTokens: ApiTokenRepository;
  ingress: IngressRepository;
  apps: AppRepository;
  policies: PolicyRepository;
  groups: GroupRepository;
  auditLog: AuditLogRepository;
  serviceTokens: ServiceTokenRepository;
  identityProviders: IdentityProviderRepository;
  users: UserRepository;
  accessRequests: AccessRequestRepository;
  lists: GatewayListRepository;
}

export interface Gateway {
  settings: Settings;
  store: Store;
  repos: Repositories;
  account: Account;
  keys: KeyRing;
  /** Encrypts secrets at rest that must be used in clear later (src/keys/sealed.ts). */
  masterKey: MasterKey;
  /** The proxy's in-memory configuration, rebuilt on change notifications. */
  snapshot: ConfigSnapshots;
  close(): Promise<void>;
}

/**
 * On PostgreSQL (several nodes), how long a new signing key is published before it signs: far
 * longer than a change takes to reach every node (NOTIFY, or the 2 s reconcile). KeyRing.start.
 */
export const KEY_ACTIVATION_DELAY_MS = 10_000;
const START_RETRY_MAX_MS = 30_000;

/**
 * Opens the store, applies migrations and makes sure the account exists. With `retry`, a
 * database that cannot be reached is tried again with exponential backoff, saying so in the
 * log, until it answers (a node starting while PostgreSQL is down or still starting).
 */
export async function openStore(
  settings: Settings,
  options: { logger?: Logger; retry?: boolean; changes?: ChangeFeed } = {},
): Promise<{ store: Store; repos: Repositories; account: Account }> {
  const { logger } = options;
  let store: Store;
  for (let attempt = 1; ; attempt++) {
    try {
      store = await Store.open(settings.databaseUrl, {
        ...(logger && { log: logger }),
        ...(options.changes && { changes: options.changes }),
      });
      break;
    } catch (error) {
      if (!options.retry || !(error instanceof StoreError && isDatabaseUnavailable(error.cause))) throw error;
      const delay = Math.min(START_RETRY_MAX_MS, 500 * 2 ** (attempt - 1));
      logger?.warn(
        { attempt, retryInMs: delay, error: error.message },
        'database unreachable at start; retrying',
      );
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
  try {
    await store.migrate();
    const repos: Repositories = {
      accounts: new AccountRepository(store),
      signingKeys: new SigningKeyRepository(store),
      apiTokens: new ApiTokenRepository(store),
      ingress: new IngressRepository(store),
      apps: new AppRepository(store),
      policies: new PolicyRepository(store),
      groups: new GroupRepository(store),
      auditLog: new AuditLogRepository(store),
      serviceTokens: new ServiceTokenRepository(store),
      identityProviders: new IdentityProviderRepository(store),
      users: new UserRepository(store),
      accessRequests: new AccessRequestRepository(store),
      lists: new GatewayListRepository(store),
    };
    // Nodes starting together on one PostgreSQL database take turns: the account is created
    // once, and two replacements of the ingress rules never interleave.
    const account = await store.withLock('open-store', async () => {
      const account = await repos.accounts.ensure({
        authDomain: settings.teamDomain,
        keyRotationIntervalDays: settings.keyRotationIntervalDays,
      });
      // Like a locally managed cloudflared tunnel, ingress in the config file is the source of
      // truth: it is written at every start, and the API refuses to replace it (docs/configuration.md).
      if (settings.ingress) await repos.ingress.replace(account.accountId, settings.ingress);
      return account;
    });
    return { store, repos, account };
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }
}

/**
 * Opens everything a running gateway needs. With `maintenance`, the key ring re-reads keys
 * every minute and rotates when the account's interval is up (the `start` command); one-shot
 * commands leave it off.
 */
export async function openGateway(
  settings: Settings,
  logger: Logger,
  options: { maintenance?: boolean; changes?: ChangeFeed } = {},
): Promise<Gateway> {
  const { store, repos, account } = await openStore(settings, {
    logger,
    retry: options.maintenance ?? false,
    ...(options.changes && { changes: options.changes }),
  });
  try {
    const rotationIntervalDays = async () =>
      (await repos.accounts.get())?.keyRotationIntervalDays ?? settings.keyRotationIntervalDays;
    // Nodes starting together on a new PostgreSQL database take turns here, so only the first
    // may generate a master key (and the first signing key with it); the others then find an
    // encrypted key and must be given the same GATEHOUSE_MASTER_KEY (docs/deploy.md).
    const { master, keys } = await store.withLock(`bootstrap:${account.accountId}`, async () => {
      const encryptedKeyCount = await repos.signingKeys.count(account.accountId);
      const master = loadMasterKey({
        fromSetting: settings.masterKey,
        dataDir: settings.dataDir,
        mayGenerate: encryptedKeyCount === 0,
        encryptedKeyCount,
      });
      if (master.generated) {
        logger.info(
          { file: master.source },
          store.dialect === 'postgres'
            ? 'generated a new master key; back it up and give every other node the same one as GATEHOUSE_MASTER_KEY'
            : 'generated a new master key; back it up',
        );
      }
      const keys = new KeyRing(store, repos.signingKeys, account.accountId, master);
      await keys.start(
        options.maintenance
          ? {
              refreshMs: 60_000,
              rotationIntervalDays,
              activationDelayMs: store.dialect === 'postgres' ? KEY_ACTIVATION_DELAY_MS : 0,
            }
          : {},
      );
      return { master, keys };
    });
    if (options.maintenance) await keys.rotateIfDue(await rotationIntervalDays());
    const snapshot = await ConfigSnapshots.start(store, repos, account.accountId, {
      onError: (error) => logger.error({ err: error }, 'could not rebuild the configuration snapshot'),
    });
    return {
      settings,
      store,
      repos,
      account,
      keys,
      masterKey: master,
      snapshot,
      async close() {
        keys.stop();
        await snapshot.close();
        await store.close();
      },
    };
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }
}
