// The `gatehouse` command (ARCHITECTURE.md §2). Every command takes the same settings flags;
// results go to stdout, logs and errors to stderr. Exit codes: 0 ok, 1 runtime failure,
// 2 bad settings or usage.
import cluster from 'node:cluster';
import { Command, CommanderError, Option } from 'commander';
import { createApiToken, PermissionError } from '../api/api-tokens.ts';
import { PERMISSION_GROUPS } from '../api/permissions.ts';
import { ConfigError, loadSettings, type SettingFlags, type Settings } from '../config/settings.ts';
import { openGateway, openStore } from '../gateway.ts';
import { MasterKeyError } from '../keys/master-key.ts';
import { createLogger, type Logger } from '../logging.ts';
import { StoreError } from '../store/store.ts';
import { registerDemoCommand } from './demo.ts';
import { addPolicyCommands } from './policy-test.ts';
import { primaryAskedToStop, runPrimary, workerChangeFeed } from './workers.ts';

function withSettingsOptions(command: Command): Command {
  return command
    .option('--config <file>', 'YAML or JSON config file (env GATEHOUSE_CONFIG)')
    .option(
      '--listen <host:port>',
      'address of the HTTP listener (env GATEHOUSE_LISTEN, default 127.0.0.1:8080)',
    )
    .option(
      '--team-domain <origin>',
      'team domain origin (env GATEHOUSE_TEAM_DOMAIN, default http://auth.localhost:8080)',
    )
    .option('--data-dir <dir>', 'data directory (env GATEHOUSE_DATA_DIR, default ./data)')
    .option('--database-url <url>', 'sqlite:<file> or postgres://… (env GATEHOUSE_DATABASE_URL)')
    .option('--api-listen <host:port>', 'extra listener serving only /client/v4 (env GATEHOUSE_API_LISTEN)')
    .option('--workers <n>', 'processes sharing the listener, for start (env GATEHOUSE_WORKERS, default 1)')
    .addOption(
      new Option('--log-level <level>', 'log level (env GATEHOUSE_LOG_LEVEL, default info)').choices([
        'fatal',
        'error',
        'warn',
        'info',
        'debug',
        'trace',
        'silent',
      ]),
    );
}

function settingsFrom(command: Command): Settings {
  return loadSettings(command.opts() as SettingFlags);
}

async function start(command: Command): Promise<void> {
  const settings = settingsFrom(command);
  const logger = createLogger(settings.logLevel);
  if (settings.workers > 1 && cluster.isPrimary) {
    await runPrimary(settings, logger, waitForSignal(logger));
    logger.info('stopped');
    return;
  }
  // A worker listens for the primary's stop from its first moment: a stop sent while it is still
  // starting (the primary was stopped right after forking) would otherwise be dropped, and the
  // primary would wait for this worker forever.
  const askedToStop = primaryAskedToStop();
  const changes = workerChangeFeed(settings);
  const gateway = await openGateway(settings, logger, { maintenance: true, ...(changes && { changes }) });
  // Loaded here, not at the top: the server pulls in the proxy and OIDC engine, which only
  // `start` needs, so one-shot commands and --help stay quick.
  const { createServer } = await import('../server.ts');
  const server = await createServer(gateway, logger);
  const bound = await server.listen();
  logger.info(
    {
      accountId: gateway.account.accountId,
      teamDomain: settings.teamDomain,
      listen: bound.listen,
      apiListen: bound.apiListen,
      database: gateway.store.dialect,
    },
    `Gatehouse is running: team domain ${settings.teamDomain}, listening on ${bound.listen}`,
  );
  await Promise.race([waitForSignal(logger), askedToStop]);
  await server.close();
  logger.info('stopped');
  // A worker's IPC channel would keep it alive after its server closed.
  cluster.worker?.disconnect();
}

function waitForSignal(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'shutting down: no new connections, finishing requests in flight');
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

export function buildProgram(): Command {
  const program = new Command('gatehouse')
    .description('Self-hosted identity-aware access gateway, compatible with Cloudflare Access')
    .version('0.1.0')
    .showHelpAfterError();

  withSettingsOptions(
    program.command('start').description('run the gateway (proxy, team domain, API)'),
  ).action((_options, command: Command) => start(command));

  withSettingsOptions(
    program.command('migrate').description('apply database migrations (start does it too)'),
  ).action(async (_options, command: Command) => {
    const { store } = await openStore(settingsFrom(command));
    await store.close();
    process.stderr.write('migrations applied\n');
  });

  const keys = program.command('keys').description('signing keys and the master key');
  withSettingsOptions(keys.command('rotate').description('rotate the signing key now')).action(
    async (_options, command: Command) => {
      const settings = settingsFrom(command);
      const gateway = await openGateway(settings, createLogger(settings.logLevel));
      try {
        const kid = await gateway.keys.rotate();
        process.stdout.write(`${kid}\n`);
        process.stderr.write(
          'rotated: the new key signs from now on; the previous one is honoured for 7 days\n',
        );
      } finally {
        await gateway.close();
      }
    },
  );

  withSettingsOptions(
    keys
      .command('rotate-master')
      .description(
        're-encrypt every secret encrypted with the master key (GATEHOUSE_MASTER_KEY or <data-dir>/master.key) under a new one',
      )
      .requiredOption(
        '--new-key-file <file>',
        'file holding the new master key (64 hex characters or base64)',
      ),
  ).action(async (options: { newKeyFile: string }, command: Command) => {
    // Loaded here, not at the top, like start's server: only this command needs it.
    const { rotateMaster } = await import('./rotate-master.ts');
    await rotateMaster(settingsFrom(command), options.newKeyFile);
  });

  const apiToken = program.command('api-token').description('management API tokens');
  withSettingsOptions(
    apiToken
      .command('create')
      .description('create a management API token and print its secret (shown once) on stdout')
      .requiredOption('--name <name>', 'a name for the token')
      .requiredOption(
        '--permission <group>',
        `permission group, repeatable; one of: ${PERMISSION_GROUPS.join('; ')}`,
        (value: string, previous: string[] = []) => [...previous, value],
      ),
  ).action(async (options: { name: string; permission: string[] }, command: Command) => {
    const { store, repos, account } = await openStore(settingsFrom(command));
    try {
      const { secret } = await createApiToken(repos.apiTokens, {
        accountId: account.accountId,
        name: options.name,
        permissions: options.permission,
      });
      process.stdout.write(`${secret}\n`);
    } finally {
      await store.close();
    }
  });

  registerDemoCommand(program, () => waitForSignal(createLogger('silent')));

  addPolicyCommands(program, withSettingsOptions, settingsFrom);

  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; usage errors were already printed by commander.
      process.exitCode = error.exitCode === 0 ? 0 : 2;
      return;
    }
    const known =
      error instanceof ConfigError
        ? 2
        : error instanceof PermissionError
          ? 2
          : error instanceof StoreError || error instanceof MasterKeyError
            ? 1
            : null;
    process.stderr.write(`gatehouse: error: ${(error as Error).message}\n`);
    if (known === null) process.stderr.write(`${(error as Error).stack ?? ''}\n`);
    process.exitCode = known ?? 1;
  }
}
