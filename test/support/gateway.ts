// Runs a whole gateway in the test process on a free loopback port, with the team domain at
// http://127.0.0.1:<port> (ARCHITECTURE.md §2: tests use an IP and port as the team domain).
import { loadSettings, type Settings } from '../../src/config/settings.ts';
import { type Gateway, openGateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/logging.ts';
import { createServer, type GatewayServer, type ServerOptions } from '../../src/server.ts';
import { createTestDatabase, type TestDatabase } from './databases.ts';
import { freePort } from './ports.ts';

export interface TestGateway {
  url: string;
  settings: Settings;
  gateway: Gateway;
  server: GatewayServer;
  database: TestDatabase;
  close(): Promise<void>;
}

export async function startTestGateway(
  options: {
    kind?: 'sqlite' | 'postgres';
    database?: TestDatabase;
    settings?: Record<string, string>;
    server?: ServerOptions;
  } = {},
): Promise<TestGateway> {
  const database = options.database ?? (await createTestDatabase(options.kind ?? 'sqlite'));
  const port = await freePort();
  const settings = loadSettings(
    {
      listen: `127.0.0.1:${port}`,
      // With a certificate the listener speaks HTTPS, so the team domain is https.
      teamDomain: `${options.settings?.tlsCert ? 'https' : 'http'}://127.0.0.1:${port}`,
      dataDir: database.dataDir,
      databaseUrl: database.url,
      logLevel: process.env.GATEHOUSE_TEST_LOG_LEVEL ?? 'silent',
      ...options.settings,
    },
    {},
  );
  const logger = createLogger(settings.logLevel);
  const gateway = await openGateway(settings, logger);
  const server = await createServer(gateway, logger, options.server);
  try {
    await server.listen();
  } catch (error) {
    // A port freePort found may be taken by the time we bind: leave nothing open behind.
    await server.close();
    if (!options.database) await database.cleanup();
    throw error;
  }
  return {
    url: settings.teamDomain,
    settings,
    gateway,
    server,
    database,
    async close() {
      await server.close();
      if (!options.database) await database.cleanup();
    },
  };
}
