// Settings: one schema for the config file, GATEHOUSE_* environment variables and command-line
// flags (ARCHITECTURE.md §2). Flags win over the environment, the environment over the file.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseListenAddress } from './listen.ts';

/** A settings problem: start-up stops with exit code 2 and this message. */
export class ConfigError extends Error {
  readonly exitCode = 2;
}

const listenAddress = z.string().refine((value) => parseListenAddress(value) !== null, {
  message: 'expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080, with a port from 0 to 65535',
});

const teamDomain = z.string().refine((value) => normaliseTeamDomain(value) !== null, {
  message: 'expected an origin such as https://auth.example.com or http://127.0.0.1:8080, or a bare host',
});

const pemFile = z.string().min(1).max(4096);

/** An address or address/prefix, IPv4 or IPv6; a list may come as one comma-separated string (env, flag). */
const cidrList = z.preprocess(
  (value) => (typeof value === 'string' ? value.split(',').map((part) => part.trim()) : value),
  z
    .array(
      z.string().refine(
        (value) => {
          const [address = '', prefix, extra] = value.split('/');
          const family = isIP(address);
          if (family === 0 || extra !== undefined) return false;
          return (
            prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128))
          );
        },
        { message: 'expected IP addresses or CIDR ranges such as 10.0.0.0/8 or 2001:db8::/32' },
      ),
    )
    .min(1)
    .max(1000),
);

const databaseUrl = z.string().refine((value) => /^(sqlite:.+|postgres(ql)?:\/\/.+)$/.test(value), {
  message: 'expected sqlite:<file path> or postgres://user@host:port/database',
});

/** One cloudflared ingress rule (https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/configure-tunnels/local-management/ingress/). */
export const ingressRuleSchema = z
  .object({
    hostname: z.string().min(1).max(253).optional(),
    path: z.string().min(1).max(1024).optional(),
    service: z.string().regex(/^(https?:\/\/[^\s/]+(:\d+)?\/?|http_status:[1-5]\d\d)$/, {
      message: 'expected http(s)://host:port or http_status:NNN',
    }),
    originRequest: z
      .object({
        connectTimeout: z
          .string()
          .regex(/^\d+(ms|s|m)$/)
          .optional(),
        noTLSVerify: z.boolean().optional(),
        httpHostHeader: z.string().min(1).max(253).optional(),
        caPool: z.string().min(1).max(4096).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type IngressRule = z.infer<typeof ingressRuleSchema>;

const settingsSchema = z
  .object({
    listen: listenAddress.default('127.0.0.1:8080'),
    teamDomain: teamDomain.default('http://auth.localhost:8080'),
    dataDir: z.string().min(1).default('./data'),
    databaseUrl: databaseUrl.optional(),
    apiListen: listenAddress.optional(),
    masterKey: z
      .string()
      .regex(/^([0-9a-fA-F]{64}|[A-Za-z0-9+/_-]{43}=?)$/, {
        message: 'expected 32 bytes as 64 hex characters or base64',
      })
      .optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    keyRotationIntervalDays: z.number().int().min(1).max(365).default(42),
    /** `start` runs this many processes (node:cluster) sharing the listener; flags and env give strings. */
    workers: z
      .preprocess(
        (value) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value),
        z.number().int().min(1).max(64),
      )
      .default(1),
    ingress: z.array(ingressRuleSchema).max(1000).optional(),
    /** PEM files for an HTTPS listener (src/tls/listener.ts); `tlsClientCa` asks clients for certificates. */
    tlsCert: pemFile.optional(),
    tlsKey: pemFile.optional(),
    tlsClientCa: pemFile.optional(),
    /** Peers whose country header (`countryHeader`) is believed: the proxies in front of Gatehouse. */
    trustedProxies: cidrList.optional(),
    /** Request header carrying the client's country, set by a trusted proxy (Cloudflare's `CF-IPCountry`). */
    countryHeader: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,64}$/, { message: 'expected a header name such as CF-IPCountry' })
      .optional(),
    /** MaxMind database file (GeoLite2/GeoIP2 Country or City, .mmdb) to look the client's country up in. */
    geoipDatabase: z.string().min(1).max(4096).optional(),
    smtp: z
      .object({
        url: z.string().regex(/^smtps?:\/\/.+/, { message: 'expected smtp://host:port or smtps://…' }),
        from: z.string().min(3).max(320),
      })
      .strict()
      .optional(),
  })
  .strict();

export type Settings = z.infer<typeof settingsSchema> & {
  /** Always set after loading: the sqlite default is derived from dataDir. */
  databaseUrl: string;
  /** Origin of the team domain, e.g. `http://auth.localhost:8080` (no trailing slash). */
  teamDomain: string;
};

/** The keys a config file may hold, with their flag and environment names. */
export const settingNames = {
  listen: { flag: '--listen', env: 'GATEHOUSE_LISTEN' },
  teamDomain: { flag: '--team-domain', env: 'GATEHOUSE_TEAM_DOMAIN' },
  dataDir: { flag: '--data-dir', env: 'GATEHOUSE_DATA_DIR' },
  databaseUrl: { flag: '--database-url', env: 'GATEHOUSE_DATABASE_URL' },
  apiListen: { flag: '--api-listen', env: 'GATEHOUSE_API_LISTEN' },
  masterKey: { flag: null, env: 'GATEHOUSE_MASTER_KEY' },
  logLevel: { flag: '--log-level', env: 'GATEHOUSE_LOG_LEVEL' },
  keyRotationIntervalDays: { flag: null, env: 'GATEHOUSE_KEY_ROTATION_INTERVAL_DAYS' },
  workers: { flag: '--workers', env: 'GATEHOUSE_WORKERS' },
  ingress: { flag: null, env: null },
  smtp: { flag: null, env: null },
  trustedProxies: { flag: null, env: 'GATEHOUSE_TRUSTED_PROXIES' },
  countryHeader: { flag: null, env: 'GATEHOUSE_COUNTRY_HEADER' },
  geoipDatabase: { flag: null, env: 'GATEHOUSE_GEOIP_DATABASE' },
  tlsCert: { flag: null, env: 'GATEHOUSE_TLS_CERT' },
  tlsKey: { flag: null, env: 'GATEHOUSE_TLS_KEY' },
  tlsClientCa: { flag: null, env: 'GATEHOUSE_TLS_CLIENT_CA' },
} as const;
type SettingKey = keyof typeof settingNames;

/** Flag values as commander hands them over (camelCase keys, strings). */
export type SettingFlags = Partial<Record<SettingKey | 'config', string>>;

/**
 * Builds the settings from file, environment and flags, or throws ConfigError naming the key,
 * the value and what would be accepted.
 */
export function loadSettings(flags: SettingFlags = {}, env: NodeJS.ProcessEnv = process.env): Settings {
  const configPath = flags.config ?? env.GATEHOUSE_CONFIG;
  const fromFile = configPath ? readConfigFile(configPath) : {};
  const fromEnv = readEnvironment(env);
  const fromFlags: Record<string, unknown> = {};
  for (const key of Object.keys(settingNames) as SettingKey[]) {
    if (flags[key] !== undefined) fromFlags[key] = flags[key];
  }
  const merged = { ...fromFile, ...fromEnv, ...fromFlags };
  const parsed = settingsSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path.join('.') || '(top level)';
    const source = describeSource(String(issue.path[0] ?? ''), fromFlags, fromEnv, configPath);
    if (issue.code === 'unrecognized_keys') {
      // Nested objects (an ingress rule, originRequest, smtp) list their own keys, not the top level's.
      const known = knownKeysAt(issue.path).join(', ');
      const where = key === '(top level)' ? '' : ` in ${key}`;
      throw new ConfigError(
        `unknown setting ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}${where}${source}; known settings${where}: ${known}`,
      );
    }
    const value = displayValue(issue.path, valueAt(merged, issue.path));
    throw new ConfigError(`invalid setting ${key} = ${value}${source}: ${issue.message}`);
  }
  const settings = parsed.data;
  const team = normaliseTeamDomain(settings.teamDomain)!;
  if (settings.countryHeader !== undefined && settings.trustedProxies === undefined) {
    // A country header from any peer is whatever the client wants it to be.
    throw new ConfigError(
      'countryHeader (GATEHOUSE_COUNTRY_HEADER) needs trustedProxies (GATEHOUSE_TRUSTED_PROXIES): the header is believed only from those peers',
    );
  }
  checkTls(settings, team);
  return {
    ...settings,
    teamDomain: team,
    databaseUrl: settings.databaseUrl ?? `sqlite:${path.join(settings.dataDir, 'gatehouse.db')}`,
  };
}

/** The TLS settings go together, and one HTTPS listener serves the team domain, so it is https. */
function checkTls(settings: z.infer<typeof settingsSchema>, team: string): void {
  const { tlsCert, tlsKey, tlsClientCa } = settings;
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new ConfigError('tlsCert and tlsKey (GATEHOUSE_TLS_CERT, GATEHOUSE_TLS_KEY) must be set together');
  }
  if (tlsClientCa !== undefined && tlsCert === undefined) {
    throw new ConfigError(
      'tlsClientCa needs tlsCert and tlsKey: client certificates are asked for over HTTPS',
    );
  }
  if (tlsCert !== undefined && !team.startsWith('https:')) {
    throw new ConfigError(
      `teamDomain ${team} must be https when tlsCert is set: the listener serves the team domain over HTTPS`,
    );
  }
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  let data: unknown;
  try {
    // YAML 1.2 is a superset of JSON, so one parser reads both formats.
    data = parseYaml(text, { uniqueKeys: true });
  } catch (error) {
    throw new ConfigError(`config file ${file} is not valid YAML or JSON: ${(error as Error).message}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(`config file ${file} must hold a mapping of settings, not ${JSON.stringify(data)}`);
  }
  return data as Record<string, unknown>;
}

function readEnvironment(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const known = new Map<string, SettingKey>();
  for (const [key, names] of Object.entries(settingNames)) {
    if (names.env) known.set(names.env, key as SettingKey);
  }
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('GATEHOUSE_') || value === undefined) continue;
    // GATEHOUSE_CONFIG names the file; GATEHOUSE_TEST_* belongs to the test suite.
    if (name === 'GATEHOUSE_CONFIG' || name.startsWith('GATEHOUSE_TEST_')) continue;
    const key = known.get(name);
    if (!key) {
      throw new ConfigError(
        `unknown environment variable ${name}; known: GATEHOUSE_CONFIG, ${[...known.keys()].join(', ')}`,
      );
    }
    out[key] = key === 'keyRotationIntervalDays' && /^\d+$/.test(value) ? Number(value) : value;
  }
  return out;
}

function describeSource(
  key: string,
  flags: Record<string, unknown>,
  env: Record<string, unknown>,
  configPath: string | undefined,
): string {
  const names = settingNames[key as SettingKey];
  if (names && key in flags) return ` (from flag ${names.flag})`;
  if (names && key in env) return ` (from ${names.env})`;
  return configPath ? ` (from config file ${configPath})` : '';
}

/** A value for an error message without its secrets: the master key is never shown, URL passwords are masked. */
function displayValue(at: PropertyKey[], value: unknown): string {
  if (at[0] === 'masterKey') {
    return typeof value === 'string'
      ? `[redacted ${value.length}-character value]`
      : `[redacted ${typeof value}]`;
  }
  return (JSON.stringify(value) ?? 'undefined')
    .replace(/(\/\/[^:/?#@\s"]*:)[^/?#\s"]*@/g, '$1***@')
    .replace(/([?&]password=)[^&#\s"]*/gi, '$1***');
}

/** The keys the object at `at` accepts (e.g. `ingress.0.originRequest`), read from the schema. */
function knownKeysAt(at: PropertyKey[]): string[] {
  type Node = { def?: { innerType?: Node; element?: Node; shape?: Record<string, Node> } } | undefined;
  let node = settingsSchema as unknown as Node;
  const unwrap = () => {
    while (node?.def?.innerType) node = node.def.innerType; // optional, default
  };
  for (const step of at) {
    unwrap();
    node = node?.def?.element ?? node?.def?.shape?.[String(step)];
  }
  unwrap();
  return Object.keys(node?.def?.shape ?? {});
}

function valueAt(data: unknown, at: PropertyKey[]): unknown {
  let cursor = data;
  for (const step of at) {
    if (cursor === null || typeof cursor !== 'object') return undefined;
    cursor = (cursor as Record<PropertyKey, unknown>)[step];
  }
  return cursor;
}

/**
 * The team domain as an origin. A bare host (`auth.example.com`) means https, as in
 * Cloudflare where the team domain is always `https://<team>.cloudflareaccess.com`.
 */
export function normaliseTeamDomain(value: string): string | null {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `https://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.username || url.password || url.search || url.hash) return null;
  if (url.pathname !== '/' && url.pathname !== '') return null;
  return url.origin;
}
