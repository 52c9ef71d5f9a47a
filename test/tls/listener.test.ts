// The TLS settings (tlsCert, tlsKey, tlsClientCa): how they load and what they refuse, and the
// certificate fact read from a real TLS connection (src/tls/client-certificate.ts).
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls, { type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadSettings } from '../../src/config/settings.ts';
import { verifiedClientCertificate } from '../../src/tls/client-certificate.ts';
import { listenerTlsOptions, verifiesClientCertificates } from '../../src/tls/listener.ts';
import {
  type CertificateAuthority,
  createCertificateAuthority,
  type IssuedCertificate,
} from '../support/certificates.ts';
import { tempDir } from '../support/databases.ts';

const temp = tempDir('gatehouse-tls-settings-');
let clients: CertificateAuthority;
let server: IssuedCertificate;
const file = (name: string, text: string) => {
  const at = path.join(temp.dir, name);
  writeFileSync(at, text);
  return at;
};

beforeAll(async () => {
  clients = await createCertificateAuthority('Gatehouse test clients');
  server = await clients.issue({ commonName: 'gatehouse', usage: 'server' });
});
afterAll(() => temp.cleanup());

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('settings', () => {
  it('come from the config file and GATEHOUSE_TLS_* variables', () => {
    const config = file('tls.yaml', 'tlsCert: /etc/gh/cert.pem\ntlsKey: /etc/gh/key.pem\n');
    const settings = loadSettings(
      { config, teamDomain: 'auth.example.com' },
      { GATEHOUSE_TLS_CLIENT_CA: '/etc/gh/clients.pem', GATEHOUSE_TLS_KEY: '/run/key.pem' },
    );
    expect(settings).toMatchObject({
      tlsCert: '/etc/gh/cert.pem',
      tlsKey: '/run/key.pem',
      tlsClientCa: '/etc/gh/clients.pem',
    });
    expect(verifiesClientCertificates(settings)).toBe(true);
    expect(verifiesClientCertificates(loadSettings({}, {}))).toBe(false);
  });

  it('refuse a certificate without its key, a client CA without a certificate, and an http team domain', () => {
    expect(
      configError(() => loadSettings({ teamDomain: 'auth.example.com' }, { GATEHOUSE_TLS_CERT: '/c' })),
    ).toBe('tlsCert and tlsKey (GATEHOUSE_TLS_CERT, GATEHOUSE_TLS_KEY) must be set together');
    expect(configError(() => loadSettings({}, { GATEHOUSE_TLS_CLIENT_CA: '/ca' }))).toContain(
      'tlsClientCa needs tlsCert and tlsKey',
    );
    expect(
      configError(() =>
        loadSettings(
          { teamDomain: 'http://127.0.0.1:8080' },
          { GATEHOUSE_TLS_CERT: '/c', GATEHOUSE_TLS_KEY: '/k' },
        ),
      ),
    ).toContain('teamDomain http://127.0.0.1:8080 must be https when tlsCert is set');
    expect(configError(() => loadSettings({}, { GATEHOUSE_TLS_CERT: '' }))).toContain(
      'invalid setting tlsCert',
    );
  });
});

describe('listener options', () => {
  it('ask for client certificates only with a client CA, and never insist on one', () => {
    const cert = file('server.pem', server.cert);
    const key = file('server-key.pem', server.key);
    const plain = listenerTlsOptions({ tlsCert: cert, tlsKey: key, tlsClientCa: undefined })!;
    expect(plain.requestCert).toBeUndefined();
    expect(plain.ca).toBeUndefined();
    const mutual = listenerTlsOptions({
      tlsCert: cert,
      tlsKey: key,
      tlsClientCa: file('ca.pem', clients.cert),
    })!;
    expect(mutual).toMatchObject({ requestCert: true, rejectUnauthorized: false, ca: clients.cert });
    expect(listenerTlsOptions({ tlsCert: undefined, tlsKey: undefined, tlsClientCa: undefined })).toBeNull();
  });

  it('refuse missing files, a key of another certificate, no certificate, and a client CA that is no CA', async () => {
    const cert = file('server.pem', server.cert);
    const key = file('server-key.pem', server.key);
    const other = await clients.issue({ commonName: 'other', usage: 'server' });
    const missing = path.join(temp.dir, 'missing.pem');
    expect(
      configError(() => listenerTlsOptions({ tlsCert: missing, tlsKey: key, tlsClientCa: undefined })),
    ).toContain(`cannot read tlsCert file ${missing}`);
    expect(
      configError(() =>
        listenerTlsOptions({
          tlsCert: cert,
          tlsKey: file('other-key.pem', other.key),
          tlsClientCa: undefined,
        }),
      ),
    ).toContain('does not fit tlsCert');
    expect(
      configError(() =>
        listenerTlsOptions({ tlsCert: file('junk.pem', 'hello'), tlsKey: key, tlsClientCa: undefined }),
      ),
    ).toContain('holds no PEM certificate');
    // A leaf certificate as the client CA would verify nothing it issued: refused, not silently useless.
    expect(
      configError(() =>
        listenerTlsOptions({ tlsCert: cert, tlsKey: key, tlsClientCa: file('leaf.pem', other.cert) }),
      ),
    ).toContain('is not a CA certificate');
  });
});

describe('the certificate fact of a connection', () => {
  /** A TLS server with the listener's options; resolves with the server side of one connection. */
  async function connect(
    certificate: IssuedCertificate | null,
  ): Promise<{ socket: TLSSocket; close(): void }> {
    const options = listenerTlsOptions({
      tlsCert: file('server.pem', server.cert),
      tlsKey: file('server-key.pem', server.key),
      tlsClientCa: file('ca.pem', clients.cert),
    })!;
    const listener = tls.createServer(options);
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<TLSSocket>((resolve) => listener.once('secureConnection', resolve));
    const client = tls.connect({
      port: (listener.address() as net.AddressInfo).port,
      host: '127.0.0.1',
      servername: 'localhost',
      ca: clients.cert,
      ...(certificate ?? {}),
    });
    client.on('error', () => {});
    const socket = await accepted;
    return {
      socket,
      close() {
        client.destroy();
        socket.destroy();
        listener.close();
      },
    };
  }

  it('holds only inside the certificate validity period', async () => {
    const notAfter = new Date(Date.now() + 3_600_000);
    const robot = await clients.issue({ commonName: 'robot-1', usage: 'client', notAfter });
    const { socket, close } = await connect(robot);
    try {
      expect(verifiedClientCertificate(socket, Date.now())).toEqual({ present: true, commonName: 'robot-1' });
      // A keep-alive connection outliving its certificate: the fact ends with the certificate.
      expect(verifiedClientCertificate(socket, notAfter.getTime() + 1000)).toBeUndefined();
      expect(verifiedClientCertificate(socket, Date.now() - 86_400_000)).toBeUndefined();
    } finally {
      close();
    }
  });

  it('names no common name for a subject with two', async () => {
    const twoNames = await clients.issue({ commonName: 'robot-1, CN=robot-2', usage: 'client' });
    const { socket, close } = await connect(twoNames);
    try {
      expect(verifiedClientCertificate(socket, Date.now())).toEqual({ present: true });
    } finally {
      close();
    }
  });

  it('is absent for a certificate of the CA that is not for client authentication', async () => {
    const serverOnly = await clients.issue({ commonName: 'robot-1', usage: 'server' });
    const { socket, close } = await connect(serverOnly);
    try {
      expect(socket.authorized).toBe(false);
      expect(verifiedClientCertificate(socket, Date.now())).toBeUndefined();
    } finally {
      close();
    }
  });

  it('is absent without a certificate and on plain TCP', async () => {
    const { socket, close } = await connect(null);
    try {
      expect(socket.authorized).toBe(false);
      expect(verifiedClientCertificate(socket, Date.now())).toBeUndefined();
      expect(verifiedClientCertificate(new net.Socket(), Date.now())).toBeUndefined();
    } finally {
      close();
    }
  });
});
