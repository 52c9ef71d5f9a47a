// A minimal MaxMind DB writer for tests: builds a real .mmdb file (format 2.0, IPv6 tree, 24-bit
// records) mapping a few networks to `{country: {iso_code}}`, the shape of GeoLite2-Country,
// so the gateway's country lookup runs the real `maxmind` reader against real bytes. No writer is
// published for Node; the format is specified at https://maxmind.github.io/MaxMind-DB/.
import { isIPv4 } from 'node:net';

/** Data section encodings (spec "Output Data Section"): the type in a control byte's top bits. */
const TYPE = { string: 2, uint16: 5, uint32: 6, map: 7, uint64: 9, array: 11 } as const;

type Value =
  | string
  | { uint16: number }
  | { uint32: number }
  | { uint64: number }
  | Value[]
  | { [key: string]: Value };

function control(type: number, size: number): Buffer {
  const extended = type > 7;
  const head = (extended ? 0 : type) << 5;
  let bytes: number[];
  if (size < 29) bytes = [head | size];
  else if (size < 285) bytes = [head | 29, size - 29];
  else throw new Error('test data too large');
  // Extended types put `type - 7` in the byte after the control byte (and its size bytes).
  if (extended) bytes.splice(1, 0, type - 7);
  return Buffer.from(bytes);
}

function uint(type: number, value: number | bigint, width: number): Buffer {
  const bytes: number[] = [];
  let rest = BigInt(value);
  for (let i = 0; i < width && rest > 0n; i++) {
    bytes.unshift(Number(rest & 0xffn));
    rest >>= 8n;
  }
  return Buffer.concat([control(type, bytes.length), Buffer.from(bytes)]);
}

function encode(value: Value): Buffer {
  if (typeof value === 'string') {
    const text = Buffer.from(value, 'utf8');
    return Buffer.concat([control(TYPE.string, text.length), text]);
  }
  if (Array.isArray(value)) return Buffer.concat([control(TYPE.array, value.length), ...value.map(encode)]);
  if ('uint16' in value && typeof value.uint16 === 'number') return uint(TYPE.uint16, value.uint16, 2);
  if ('uint32' in value && typeof value.uint32 === 'number') return uint(TYPE.uint32, value.uint32, 4);
  if ('uint64' in value && typeof value.uint64 === 'number') return uint(TYPE.uint64, value.uint64, 8);
  const entries = Object.entries(value as Record<string, Value>);
  return Buffer.concat([
    control(TYPE.map, entries.length),
    ...entries.flatMap(([key, item]) => [encode(key), encode(item)]),
  ]);
}

/** The 128 bits of an address (IPv4 goes to ::a.b.c.d, where IPv6 databases keep IPv4). */
function bits(address: string): number[] {
  let value = 0n;
  if (isIPv4(address)) {
    for (const part of address.split('.')) value = (value << 8n) | BigInt(part);
  } else {
    const [head = '', tail] = address.split('::');
    const groups = (text: string) => (text === '' ? [] : text.split(':'));
    const left = groups(head);
    const right = tail === undefined ? [] : groups(tail);
    const all = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
    for (const group of all) value = (value << 16n) | BigInt(Number.parseInt(group, 16));
  }
  return Array.from({ length: 128 }, (_, index) => Number((value >> BigInt(127 - index)) & 1n));
}

interface TreeNode {
  children: [TreeNode | number | null, TreeNode | number | null];
}

/**
 * A database mapping each CIDR (IPv4 or IPv6) to a country code. Networks must not overlap.
 */
export function buildCountryDatabase(networks: Record<string, string>): Buffer {
  const data: Buffer[] = [];
  let dataSize = 0;
  const root: TreeNode = { children: [null, null] };
  for (const [cidr, isoCode] of Object.entries(networks)) {
    const [address = '', prefixText] = cidr.split('/');
    const prefix = Number(prefixText) + (isIPv4(address) ? 96 : 0);
    const record = encode({ country: { iso_code: isoCode, names: { en: isoCode } } });
    const offset = dataSize;
    data.push(record);
    dataSize += record.length;
    const path = bits(address).slice(0, prefix);
    let node = root;
    for (let depth = 0; depth < path.length - 1; depth++) {
      const bit = path[depth] as 0 | 1;
      let next = node.children[bit];
      if (next === null) {
        next = { children: [null, null] };
        node.children[bit] = next;
      }
      if (typeof next === 'number') throw new Error(`${cidr} overlaps another network`);
      node = next;
    }
    node.children[path.at(-1) as 0 | 1] = offset;
  }
  // Number the nodes breadth first; root is node 0.
  const nodes: TreeNode[] = [];
  for (let queue = [root]; queue.length > 0; ) {
    const node = queue.shift()!;
    nodes.push(node);
    for (const child of node.children) if (child !== null && typeof child !== 'number') queue.push(child);
  }
  const count = nodes.length;
  const index = new Map(nodes.map((node, position) => [node, position]));
  const tree = Buffer.alloc(count * 6);
  nodes.forEach((node, position) => {
    node.children.forEach((child, side) => {
      // A record is another node, "no data" (= node count), or node count + 16 + data offset.
      const value =
        child === null ? count : typeof child === 'number' ? count + 16 + child : index.get(child)!;
      tree.writeUIntBE(value, position * 6 + side * 3, 3);
    });
  });
  const metadata = encode({
    node_count: { uint32: count },
    record_size: { uint16: 24 },
    ip_version: { uint16: 6 },
    database_type: 'Gatehouse-Test-Country',
    languages: ['en'],
    binary_format_major_version: { uint16: 2 },
    binary_format_minor_version: { uint16: 0 },
    build_epoch: { uint64: Math.floor(Date.now() / 1000) },
    description: { en: 'test networks' },
  });
  return Buffer.concat([
    tree,
    Buffer.alloc(16),
    ...data,
    Buffer.from('abcdef4d61784d696e642e636f6d', 'hex'),
    metadata,
  ]);
}
