// Opens the pieces every command needs, in order: store (migrated), account, master key,
// key ring. Each failure stops start-up with a message that says what to do.
import type { Settings } from './config/settings.ts';
import { KeyRing } from './keys/keyring.ts';
import { loadMasterKey, type MasterKey } from './keys/master-key.ts';
import type { Logger } from './logging.ts';
import { ConfigSnapshots } from './snapshot/snapshot.ts';
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
import { Store } from './store/store.ts';

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

/** Opens the store, applies migrations and makes sure the account exists. */
export async function openStore(
  settings: Settings,
): Promise<{ store: Store; repos: Repositories; account: Account }> {
  const store = await Store.open(settings.databaseUrl);
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
    const account = await repos.accounts.ensure({
      authDomain: settings.teamDomain,
      keyRotationIntervalDays: settings.keyRotationIntervalDays,
    });
    // Like a locally managed cloudflared tunnel, ingress in the config file is the source of
    // truth: it is written at every start, and the API refuses to replace it (docs/configuration.md).
    if (settings.ingress) await repos.ingress.replace(account.accountId, settings.ingress);
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
  options: { maintenance?: boolean } = {},
): Promise<Gateway> {
  const { store, repos, account } = await openStore(settings);
  try {
    const encryptedKeyCount = await repos.signingKeys.count(account.accountId);
    const master = loadMasterKey({
      fromSetting: settings.masterKey,
      dataDir: settings.dataDir,
      mayGenerate: encryptedKeyCount === 0,
      encryptedKeyCount,
    });
    if (master.generated) logger.info({ file: master.source }, 'generated a new master key; back it up');
    const keys = new KeyRing(store, repos.signingKeys, account.accountId, master);
    const rotationIntervalDays = async () =>
      (await repos.accounts.get())?.keyRotationIntervalDays ?? settings.keyRotationIntervalDays;
    await keys.start(options.maintenance ? { refreshMs: 60_000, rotationIntervalDays } : {});
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
