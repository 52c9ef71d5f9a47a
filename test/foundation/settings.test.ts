// Settings from file, environment and flags (ARCHITECTURE.md §2): precedence, both file formats,
// and errors that name the key, the value and what would be accepted.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadSettings, normaliseTeamDomain } from '../../src/config/settings.ts';
import { tempDir } from '../support/databases.ts';

const temp = tempDir('gatehouse-settings-');
afterAll(() => temp.cleanup());

let fileCount = 0;
function configFile(text: string, extension = 'yaml'): string {
  const file = path.join(temp.dir, `config-${++fileCount}.${extension}`);
  writeFileSync(file, text);
  return file;
}

/** The ConfigError `fn` throws (fails the test when it throws nothing or something else). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).exitCode).toBe(2);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, but the settings loaded');
}

describe('defaults', () => {
  it('match the interface contract when nothing is set', () => {
    const settings = loadSettings({}, {});
    expect(settings.listen).toBe('127.0.0.1:8080');
    expect(settings.teamDomain).toBe('http://auth.localhost:8080');
    expect(settings.dataDir).toBe('./data');
    expect(settings.databaseUrl).toBe(`sqlite:${path.join('./data', 'gatehouse.db')}`);
    expect(settings.apiListen).toBeUndefined();
    expect(settings.keyRotationIntervalDays).toBe(42);
  });

  it('derive the default database URL from the data directory', () => {
    expect(loadSettings({ dataDir: '/srv/gatehouse' }, {}).databaseUrl).toBe(
      'sqlite:/srv/gatehouse/gatehouse.db',
    );
    expect(loadSettings({}, { GATEHOUSE_DATA_DIR: 'var/gh' }).databaseUrl).toBe('sqlite:var/gh/gatehouse.db');
    // An explicit URL is kept as given, whatever the data directory.
    expect(
      loadSettings({ dataDir: '/srv/gatehouse', databaseUrl: 'postgres://db.internal/gatehouse' }, {})
        .databaseUrl,
    ).toBe('postgres://db.internal/gatehouse');
  });
});

describe('precedence', () => {
  const file = () =>
    configFile(
      'listen: 10.0.0.1:1001\nteamDomain: https://file.example.com\ndataDir: /from/file\nlogLevel: warn\n',
    );

  it('takes each setting from the file when nothing else sets it', () => {
    const settings = loadSettings({ config: file() }, {});
    expect(settings.listen).toBe('10.0.0.1:1001');
    expect(settings.teamDomain).toBe('https://file.example.com');
    expect(settings.dataDir).toBe('/from/file');
    expect(settings.logLevel).toBe('warn');
  });

  it('lets the environment win over the file, and flags win over both', () => {
    const settings = loadSettings(
      { config: file(), listen: '10.0.0.3:1003' },
      { GATEHOUSE_LISTEN: '10.0.0.2:1002', GATEHOUSE_TEAM_DOMAIN: 'https://env.example.com' },
    );
    expect(settings.listen).toBe('10.0.0.3:1003'); // flag over env over file
    expect(settings.teamDomain).toBe('https://env.example.com'); // env over file
    expect(settings.dataDir).toBe('/from/file'); // file only
  });

  it('finds the config file through GATEHOUSE_CONFIG, and --config wins over it', () => {
    const envFile = configFile('listen: 10.0.0.5:1005\n');
    const flagFile = configFile('listen: 10.0.0.6:1006\n');
    expect(loadSettings({}, { GATEHOUSE_CONFIG: envFile }).listen).toBe('10.0.0.5:1005');
    expect(loadSettings({ config: flagFile }, { GATEHOUSE_CONFIG: envFile }).listen).toBe('10.0.0.6:1006');
  });

  it('ignores GATEHOUSE_TEST_* variables, which belong to the test suite', () => {
    expect(loadSettings({}, { GATEHOUSE_TEST_DATABASE_URL: 'postgres://x/y' }).databaseUrl).toBe(
      'sqlite:data/gatehouse.db',
    );
  });
});

describe('config files', () => {
  const ingress = [
    {
      hostname: 'wiki.example.com',
      service: 'http://127.0.0.1:3000',
      originRequest: { connectTimeout: '5s' },
    },
    { service: 'http_status:404' },
  ];

  it('reads YAML', () => {
    const file = configFile(
      [
        'listen: 0.0.0.0:9000',
        'keyRotationIntervalDays: 7',
        'ingress:',
        '  - hostname: wiki.example.com',
        '    service: http://127.0.0.1:3000',
        '    originRequest:',
        '      connectTimeout: 5s',
        '  - service: http_status:404',
        '',
      ].join('\n'),
    );
    const settings = loadSettings({ config: file }, {});
    expect(settings.listen).toBe('0.0.0.0:9000');
    expect(settings.keyRotationIntervalDays).toBe(7);
    expect(settings.ingress).toEqual(ingress);
  });

  it('reads JSON', () => {
    const file = configFile(
      JSON.stringify({ listen: '0.0.0.0:9001', keyRotationIntervalDays: 9, ingress }),
      'json',
    );
    const settings = loadSettings({ config: file }, {});
    expect(settings.listen).toBe('0.0.0.0:9001');
    expect(settings.keyRotationIntervalDays).toBe(9);
    expect(settings.ingress).toEqual(ingress);
  });

  it('treats an empty file as no settings', () => {
    expect(loadSettings({ config: configFile('') }, {}).listen).toBe('127.0.0.1:8080');
  });

  it('refuses malformed YAML and JSON, naming the file', () => {
    const yamlFile = configFile('listen: [127.0.0.1:8080\n');
    expect(configError(() => loadSettings({ config: yamlFile }, {})).message).toContain(
      `config file ${yamlFile} is not valid YAML or JSON`,
    );
    const jsonFile = configFile('{"listen": ', 'json');
    expect(configError(() => loadSettings({ config: jsonFile }, {})).message).toContain(
      `config file ${jsonFile} is not valid YAML or JSON`,
    );
  });

  it('refuses duplicate keys, which would silently drop one value', () => {
    const file = configFile('listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n');
    expect(configError(() => loadSettings({ config: file }, {})).message).toMatch(/keys must be unique/i);
  });

  it('refuses a file that is not a mapping', () => {
    const file = configFile('- listen\n- 127.0.0.1:8080\n');
    expect(configError(() => loadSettings({ config: file }, {})).message).toContain('must hold a mapping');
  });

  it('refuses a config file that does not exist, naming it', () => {
    const missing = path.join(temp.dir, 'no-such-config.yaml');
    expect(configError(() => loadSettings({ config: missing }, {})).message).toContain(
      `cannot read config file ${missing}`,
    );
  });
});

describe('errors name the key, the value and what is accepted', () => {
  it('wrong type in the file', () => {
    const file = configFile('listen: 8080\n');
    const { message } = configError(() => loadSettings({ config: file }, {}));
    expect(message).toContain('listen = 8080');
    expect(message).toContain(`config file ${file}`);
    expect(message).toContain('expected string');
  });

  it('a value the setting does not accept, from a flag', () => {
    const { message } = configError(() => loadSettings({ listen: 'localhost' }, {}));
    expect(message).toContain('listen = "localhost"');
    expect(message).toContain('flag --listen');
    expect(message).toContain('expected HOST:PORT');
  });

  it('a port out of range', () => {
    const { message } = configError(() => loadSettings({ apiListen: '127.0.0.1:65536' }, {}));
    expect(message).toContain('apiListen = "127.0.0.1:65536"');
    expect(message).toContain('port from 0 to 65535');
  });

  it('a number that is not a number, from the environment', () => {
    const { message } = configError(() =>
      loadSettings({}, { GATEHOUSE_KEY_ROTATION_INTERVAL_DAYS: 'six weeks' }),
    );
    expect(message).toContain('keyRotationIntervalDays = "six weeks"');
    expect(message).toContain('GATEHOUSE_KEY_ROTATION_INTERVAL_DAYS');
    expect(message).toContain('expected number');
  });

  it('a number out of range', () => {
    const { message } = configError(() => loadSettings({}, { GATEHOUSE_KEY_ROTATION_INTERVAL_DAYS: '0' }));
    expect(message).toContain('keyRotationIntervalDays = 0');
    expect(message).toMatch(/>=\s?1/);
  });

  it('a value outside an enumeration lists the accepted ones', () => {
    const { message } = configError(() => loadSettings({}, { GATEHOUSE_LOG_LEVEL: 'verbose' }));
    expect(message).toContain('logLevel = "verbose"');
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) {
      expect(message).toContain(`"${level}"`);
    }
  });

  it('an unknown key in the file lists the known settings', () => {
    const file = configFile('lisen: 127.0.0.1:8080\n');
    const { message } = configError(() => loadSettings({ config: file }, {}));
    expect(message).toContain('unknown setting "lisen"');
    expect(message).toContain(file);
    expect(message).toMatch(/known settings: .*listen.*teamDomain.*databaseUrl/);
  });

  it('an unknown key inside an ingress rule lists what that rule accepts', () => {
    // A cloudflared option Gatehouse does not implement, copied from a cloudflared config.
    const file = configFile(
      'ingress:\n  - service: http://127.0.0.1:3000\n    originRequest:\n      http2Origin: true\n',
    );
    const { message } = configError(() => loadSettings({ config: file }, {}));
    expect(message).toContain('unknown setting "http2Origin" in ingress.0.originRequest');
    expect(message).toContain('connectTimeout, noTLSVerify, httpHostHeader, caPool');
    expect(message).not.toContain('teamDomain');
  });

  it('an invalid ingress service names the rule and the accepted forms', () => {
    const file = configFile(
      JSON.stringify({ ingress: [{ service: 'http_status:404' }, { service: 'ftp://files:21' }] }),
      'json',
    );
    const { message } = configError(() => loadSettings({ config: file }, {}));
    expect(message).toContain('ingress.1.service = "ftp://files:21"');
    expect(message).toContain('expected http(s)://host:port or http_status:NNN');
  });

  it('an unknown GATEHOUSE_* variable lists the known ones', () => {
    const { message } = configError(() => loadSettings({}, { GATEHOUSE_LISTN: '127.0.0.1:8080' }));
    expect(message).toContain('unknown environment variable GATEHOUSE_LISTN');
    expect(message).toContain('GATEHOUSE_LISTEN');
    expect(message).toContain('GATEHOUSE_DATABASE_URL');
  });

  it('never echoes a master key, even an invalid one', () => {
    const almost = `${'ab'.repeat(31)}a`; // 63 hex characters: a typo away from a real key
    const { message } = configError(() => loadSettings({}, { GATEHOUSE_MASTER_KEY: almost }));
    expect(message).toContain('masterKey');
    expect(message).toContain('GATEHOUSE_MASTER_KEY');
    expect(message).toContain('64 hex characters or base64');
    expect(message).not.toContain(almost);
    expect(message).not.toContain('abab');
  });

  it('never echoes a password in a database URL', () => {
    const { message } = configError(() =>
      loadSettings({ databaseUrl: 'postgress://gatehouse:hunter2@db.internal/gatehouse' }, {}),
    );
    expect(message).toContain('postgress://gatehouse:***@db.internal/gatehouse');
    expect(message).toContain('expected sqlite:<file path> or postgres://');
    expect(message).not.toContain('hunter2');
  });
});

describe('team domain', () => {
  it('a bare host means https', () => {
    expect(loadSettings({ teamDomain: 'auth.example.com' }, {}).teamDomain).toBe('https://auth.example.com');
    expect(normaliseTeamDomain('auth.example.com:8443')).toBe('https://auth.example.com:8443');
  });

  it('is kept as an origin: http kept, trailing slash and default port dropped, case folded', () => {
    expect(loadSettings({ teamDomain: 'http://127.0.0.1:8080' }, {}).teamDomain).toBe(
      'http://127.0.0.1:8080',
    );
    expect(normaliseTeamDomain('https://Auth.Example.com:443/')).toBe('https://auth.example.com');
  });

  it('refuses paths, credentials, queries and other schemes', () => {
    for (const value of [
      'https://auth.example.com/login',
      'https://user:pw@auth.example.com',
      'https://auth.example.com?x=1',
      'ftp://auth.example.com',
    ]) {
      const { message } = configError(() => loadSettings({ teamDomain: value }, {}));
      expect(message).toContain('teamDomain = ');
      expect(message).toContain('expected an origin');
    }
  });
});
