// Which network a resolved address belongs to, for server-side fetches driven by a client
// (client ID metadata documents): an attacker who controls a `client_id` URL must not make
// Gatehouse reach its own loopback services or the deployment's private network (SSRF; CIMD
// draft §6 "Server-Side Request Forgery", MCP security best practices).
import { IpRangeSet, parseCidr, parseIp } from '../../policy/ip.ts';

export type AddressScope = 'loopback' | 'private' | 'public';

const LOOPBACK = new IpRangeSet(['127.0.0.0/8', '::1/128'].map((cidr) => parseCidr(cidr)!));

/**
 * Not globally reachable (IANA special-purpose registries, RFC 6890): private, link-local,
 * shared (CGNAT), documentation, benchmarking, multicast, reserved, unspecified. IPv4-mapped IPv6
 * is parsed as IPv4 by parseIp, so ::ffff:10.0.0.1 falls into 10.0.0.0/8. NAT64 (64:ff9b::/96)
 * and 6to4 (2002::/16) embed an IPv4 address the network may route to: refused as a whole.
 */
const NOT_PUBLIC = new IpRangeSet(
  [
    '0.0.0.0/8',
    '10.0.0.0/8',
    '100.64.0.0/10',
    '169.254.0.0/16',
    '172.16.0.0/12',
    '192.0.0.0/24',
    '192.0.2.0/24',
    '192.88.99.0/24',
    '192.168.0.0/16',
    '198.18.0.0/15',
    '198.51.100.0/24',
    '203.0.113.0/24',
    '224.0.0.0/3',
    '::/128',
    '64:ff9b::/96',
    '64:ff9b:1::/48',
    '100::/64',
    '2001::/23',
    '2001:db8::/32',
    '2002::/16',
    'fc00::/7',
    'fe80::/10',
    'ff00::/8',
  ].map((cidr) => parseCidr(cidr)!),
);

/** The scope of an IP address literal; null when the text is not one. */
export function addressScope(address: string): AddressScope | null {
  const parsed = parseIp(address.startsWith('[') ? address.slice(1, -1) : address);
  if (!parsed) return null;
  if (LOOPBACK.has(parsed)) return 'loopback';
  return NOT_PUBLIC.has(parsed) ? 'private' : 'public';
}
