// IP addresses and CIDR ranges as integers, so that the `ip` and `ip_list` selectors are integer
// comparisons on the hot path. Cloudflare's `ip` rule takes "an IPv4 or IPv6 CIDR block"
// [TS: AccessIPRule]; its own example, 237.84.2.178/24, has host bits set, so those are masked
// rather than refused. A bare address means a single host (/32 or /128).
//
// IPv4-mapped IPv6 (::ffff:a.b.c.d) is the same host as a.b.c.d: Node reports IPv4 clients of a
// dual-stack socket that way. Such addresses and ranges are turned into IPv4 here, so
// ::ffff:1.2.3.4 matches 1.2.3.0/24 and 1.2.3.4 matches ::ffff:1.2.3.0/120. An IPv6 range written
// in any other form (::/0 included) matches IPv6 clients only: an IPv4 client never falls into it
// by accident.

export type IpAddress =
  | { readonly family: 4; readonly value: number }
  | { readonly family: 6; readonly value: bigint };

export type IpRange =
  | { readonly family: 4; readonly start: number; readonly end: number }
  | { readonly family: 6; readonly start: bigint; readonly end: bigint };

const MAPPED_PREFIX = 0xffffn << 32n;
const MAPPED_MASK = ~0xffffffffn & ((1n << 128n) - 1n);

/** Parses dotted-quad IPv4 text. Leading zeros are refused: some parsers read them as octal. */
function parseIpv4(text: string, from: number, to: number): number | null {
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = from; i <= to; i++) {
    const code = i < to ? text.charCodeAt(i) : 46; // a virtual '.' closes the last part
    if (code === 46) {
      if (digits === 0 || parts === 4) return null;
      value = value * 256 + part;
      parts++;
      part = 0;
      digits = 0;
    } else if (code >= 48 && code <= 57) {
      if (digits > 0 && part === 0) return null;
      part = part * 10 + (code - 48);
      if (part > 255) return null;
      digits++;
    } else {
      return null;
    }
  }
  return parts === 4 ? value : null;
}

function parseHexGroup(group: string): number | null {
  if (group.length === 0 || group.length > 4 || !/^[0-9a-fA-F]+$/.test(group)) return null;
  return Number.parseInt(group, 16);
}

/** Parses one side of "::" into 16-bit groups; an IPv4 tail counts as two groups. */
function parseGroups(text: string, allowIpv4Tail: boolean): number[] | null {
  if (text === '') return [];
  const pieces = text.split(':');
  const groups: number[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (allowIpv4Tail && i === pieces.length - 1 && piece.includes('.')) {
      const v4 = parseIpv4(piece, 0, piece.length);
      if (v4 === null) return null;
      groups.push(Math.floor(v4 / 65536), v4 % 65536);
    } else {
      const group = parseHexGroup(piece);
      if (group === null) return null;
      groups.push(group);
    }
  }
  return groups;
}

/** RFC 4291 §2.2 text forms, without zone identifiers (a zone names a local link, not a client). */
function parseIpv6(text: string): bigint | null {
  const halves = text.split('::');
  if (halves.length > 2) return null;
  let groups: number[];
  if (halves.length === 2) {
    const head = parseGroups(halves[0]!, false);
    const tail = parseGroups(halves[1]!, true);
    if (head === null || tail === null || head.length + tail.length > 7) return null;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    const all = parseGroups(text, true);
    if (all === null || all.length !== 8) return null;
    groups = all;
  }
  let value = 0n;
  for (const group of groups) value = (value << 16n) | BigInt(group);
  return value;
}

function isMapped(value: bigint): boolean {
  return (value & MAPPED_MASK) === MAPPED_PREFIX;
}

/** Parses an IPv4 or IPv6 address; IPv4-mapped IPv6 comes back as IPv4. Null when invalid. */
export function parseIp(text: string): IpAddress | null {
  const v4 = parseIpv4(text, 0, text.length);
  if (v4 !== null) return { family: 4, value: v4 };
  if (!text.includes(':')) return null;
  const v6 = parseIpv6(text);
  if (v6 === null) return null;
  return isMapped(v6) ? { family: 4, value: Number(v6 & 0xffffffffn) } : { family: 6, value: v6 };
}

function parsePrefix(text: string, max: number): number | null {
  if (!/^(0|[1-9][0-9]{0,2})$/.test(text)) return null;
  const prefix = Number(text);
  return prefix <= max ? prefix : null;
}

function ipv4Range(address: number, prefix: number): IpRange {
  const size = 2 ** (32 - prefix);
  const start = address - (address % size);
  return { family: 4, start, end: start + size - 1 };
}

/** Parses "address/prefix" or a bare address. Host bits are masked. Null when invalid. */
export function parseCidr(text: string): IpRange | null {
  const slash = text.indexOf('/');
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const v4 = parseIpv4(addressText, 0, addressText.length);
  if (v4 !== null) {
    const prefix = slash === -1 ? 32 : parsePrefix(text.slice(slash + 1), 32);
    return prefix === null ? null : ipv4Range(v4, prefix);
  }
  if (!addressText.includes(':')) return null;
  const v6 = parseIpv6(addressText);
  const prefix = slash === -1 ? 128 : parsePrefix(text.slice(slash + 1), 128);
  if (v6 === null || prefix === null) return null;
  if (prefix >= 96 && isMapped(v6)) return ipv4Range(Number(v6 & 0xffffffffn), prefix - 96);
  const hostBits = (1n << BigInt(128 - prefix)) - 1n;
  const start = v6 & ~hostBits;
  return { family: 6, start, end: start | hostBits };
}

interface SortedRanges<T extends number | bigint> {
  readonly starts: T[];
  readonly ends: T[];
}

/** Sorts and merges overlapping ranges so that a lookup is one binary search. */
function mergeRanges<T extends number | bigint>(ranges: { start: T; end: T }[]): SortedRanges<T> {
  ranges.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const starts: T[] = [];
  const ends: T[] = [];
  for (const { start, end } of ranges) {
    const last = ends.length - 1;
    if (last >= 0 && start <= ends[last]!) {
      if (end > ends[last]!) ends[last] = end;
    } else {
      starts.push(start);
      ends.push(end);
    }
  }
  return { starts, ends };
}

function contains<T extends number | bigint>({ starts, ends }: SortedRanges<T>, value: T): boolean {
  let low = 0;
  let high = starts.length - 1;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    if (starts[mid]! <= value) {
      if (value <= ends[mid]!) return true;
      low = mid + 1;
    } else {
      high = mid - 1;
    }
  }
  return false;
}

/** A set of IPv4 and IPv6 ranges, built once when an app's policies compile. */
export class IpRangeSet {
  private readonly v4: SortedRanges<number>;
  private readonly v6: SortedRanges<bigint>;

  constructor(ranges: Iterable<IpRange>) {
    const v4: { start: number; end: number }[] = [];
    const v6: { start: bigint; end: bigint }[] = [];
    for (const range of ranges) {
      if (range.family === 4) v4.push(range);
      else v6.push(range);
    }
    this.v4 = mergeRanges(v4);
    this.v6 = mergeRanges(v6);
  }

  has(address: IpAddress): boolean {
    return address.family === 4 ? contains(this.v4, address.value) : contains(this.v6, address.value);
  }
}
