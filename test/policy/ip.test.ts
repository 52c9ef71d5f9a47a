import { describe, expect, it } from 'vitest';
import { IpRangeSet, parseCidr, parseIp } from '../../src/policy/ip.ts';

describe('parseIp', () => {
  it.each([
    ['0.0.0.0', 4, 0],
    ['255.255.255.255', 4, 0xffffffff],
    ['10.1.2.3', 4, 0x0a010203],
    ['::ffff:10.1.2.3', 4, 0x0a010203],
    ['::FFFF:0a01:0203', 4, 0x0a010203],
    ['0:0:0:0:0:ffff:10.1.2.3', 4, 0x0a010203],
  ])('%s is IPv%i', (text, family, value) => {
    expect(parseIp(text)).toEqual({ family, value });
  });

  it.each([
    ['::', 0n],
    ['::1', 1n],
    ['2001:db8::', 0x20010db8n << 96n],
    ['2001:DB8:0:0:0:0:0:1', (0x20010db8n << 96n) | 1n],
    ['1:2:3:4:5:6:7::', 0x0001000200030004000500060007_0000n],
    ['::2:3:4:5:6:7:8', 0x0000000200030004000500060007_0008n],
    ['::1.2.3.4', 0x01020304n],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', (1n << 128n) - 1n],
  ])('%s is IPv6', (text, value) => {
    expect(parseIp(text)).toEqual({ family: 6, value });
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.1.1.1',
    '01.2.3.4',
    '1.2.3.-4',
    '1..2.3',
    ' 1.2.3.4',
    '1.2.3.4/32',
    ':::',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '12345::',
    'fe80::1%eth0',
    '1.2.3.4::',
    ':1:2:3:4:5:6:7',
    'g::',
    'localhost',
  ])('refuses %j', (text) => {
    expect(parseIp(text)).toBeNull();
  });
});

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', 4, 0x0a000000, 0x0affffff],
    ['237.84.2.178/24', 4, 0xed540200, 0xed5402ff], // Cloudflare's own example: host bits set
    ['1.2.3.4', 4, 0x01020304, 0x01020304],
    ['1.2.3.4/32', 4, 0x01020304, 0x01020304],
    ['0.0.0.0/0', 4, 0, 0xffffffff],
    ['::ffff:1.2.3.0/120', 4, 0x01020300, 0x010203ff],
    ['::ffff:0:0/96', 4, 0, 0xffffffff],
  ])('%s is an IPv4 range', (text, family, start, end) => {
    expect(parseCidr(text)).toEqual({ family, start, end });
  });

  it.each([
    ['::/0', 0n, (1n << 128n) - 1n],
    ['2001:db8::/32', 0x20010db8n << 96n, (0x20010db8n << 96n) | ((1n << 96n) - 1n)],
    ['2001:db8::1/128', (0x20010db8n << 96n) | 1n, (0x20010db8n << 96n) | 1n],
    ['2001:db8::1', (0x20010db8n << 96n) | 1n, (0x20010db8n << 96n) | 1n],
    ['2001:db8::ff/120', 0x20010db8n << 96n, (0x20010db8n << 96n) | 0xffn],
  ])('%s is an IPv6 range', (text, start, end) => {
    expect(parseCidr(text)).toEqual({ family: 6, start, end });
  });

  it.each([
    '1.2.3.4/33',
    '1.2.3.4/-1',
    '1.2.3.4/08',
    '1.2.3.4/',
    '1.2.3.4/a',
    '/8',
    '::/129',
    '2001:db8::/0x20',
    '10.0.0.0/8/8',
    'fe80::/10%eth0',
    'example.com/24',
  ])('refuses %j', (text) => {
    expect(parseCidr(text)).toBeNull();
  });
});

describe('IpRangeSet', () => {
  const set = (...cidrs: string[]) => new IpRangeSet(cidrs.map((cidr) => parseCidr(cidr)!));
  const has = (ranges: IpRangeSet, ip: string) => ranges.has(parseIp(ip)!);

  it('finds addresses in merged, overlapping and disjoint ranges', () => {
    const ranges = set('10.0.0.0/8', '10.1.0.0/16', '192.168.1.0/24', '192.168.3.7', '2001:db8::/32', '::1');
    for (const ip of [
      '10.0.0.0',
      '10.255.255.255',
      '10.1.2.3',
      '192.168.1.200',
      '192.168.3.7',
      '2001:db8:ffff::1',
      '::1',
    ]) {
      expect(has(ranges, ip), ip).toBe(true);
    }
    for (const ip of ['9.255.255.255', '11.0.0.0', '192.168.2.1', '192.168.3.8', '2001:db9::', '::2']) {
      expect(has(ranges, ip), ip).toBe(false);
    }
  });

  it('keeps IPv4 and IPv6 apart, except for the IPv4-mapped form', () => {
    expect(has(set('::/0'), '1.2.3.4')).toBe(false);
    expect(has(set('::/0'), '::ffff:1.2.3.4')).toBe(false);
    expect(has(set('0.0.0.0/0'), '::1')).toBe(false);
    expect(has(set('1.2.3.0/24'), '::ffff:1.2.3.4')).toBe(true);
    expect(has(set('::ffff:1.2.3.0/120'), '1.2.3.4')).toBe(true);
  });

  it('is empty when built from nothing', () => {
    expect(has(set(), '1.2.3.4')).toBe(false);
    expect(has(set(), '::1')).toBe(false);
  });
});
