// The `certificate` and `common_name` facts of a request [spec §3.2: "any valid mTLS client
// certificate", its common name]: read from the connection the request came on, which the TLS
// handshake verified against the configured client CA (src/tls/listener.ts). Read once per
// connection: a connection's certificate does not change (the listener refuses renegotiation).
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { RequestContext } from '../policy/types.ts';

type CertificateFact = NonNullable<RequestContext['mtls']>;

interface VerifiedCertificate {
  readonly fact: CertificateFact;
  readonly notBefore: number;
  readonly notAfter: number;
}

const byConnection = new WeakMap<Socket, VerifiedCertificate | null>();

/**
 * The verified client certificate of the connection, or undefined when there is none: plain
 * HTTP, no certificate, one the client CA did not sign, or one outside its validity period now
 * (a keep-alive connection may outlive the certificate its handshake checked).
 */
export function verifiedClientCertificate(socket: Socket, nowMs: number): CertificateFact | undefined {
  // `authorized` is true only on a TLS socket that asked for a certificate and verified it.
  if ((socket as TLSSocket).authorized !== true) return undefined;
  let verified = byConnection.get(socket);
  if (verified === undefined) {
    verified = readCertificate(socket as TLSSocket);
    byConnection.set(socket, verified);
  }
  if (verified === null || nowMs < verified.notBefore || nowMs >= verified.notAfter) return undefined;
  return verified.fact;
}

function readCertificate(socket: TLSSocket): VerifiedCertificate | null {
  const certificate = socket.getPeerCertificate(false);
  const notBefore = Date.parse(certificate.valid_from);
  const notAfter = Date.parse(certificate.valid_to);
  if (Number.isNaN(notBefore) || Number.isNaN(notAfter)) return null;
  // Node gives an array for a subject with several CNs: no one common name, so none matches.
  const commonName = certificate.subject?.CN;
  const fact: CertificateFact =
    typeof commonName === 'string' ? { present: true, commonName } : { present: true };
  return { fact, notBefore, notAfter };
}

/** The certificate fact as a RequestContext fragment: empty without a verified certificate. */
export function certificateFacts(socket: Socket, nowMs: number): Pick<RequestContext, 'mtls'> {
  const mtls = verifiedClientCertificate(socket, nowMs);
  return mtls === undefined ? {} : { mtls };
}
