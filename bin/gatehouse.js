#!/usr/bin/env -S node --min-semi-space-size=16 --max-semi-space-size=32
// The package's `bin`: runs the TypeScript sources through tsx so `npx gatehouse` works
// right after `npm ci`, with no build step and no stale output to go out of date.
//
// The `#!` line sizes V8's young generation for a proxy: semi-spaces of at least 16 MB (the
// size Node's default grows to under load; V8 would shrink it to about 1 MB while idle, and the
// first seconds after an idle spell then scavenged dozens of times a second, promoted request
// garbage and set off a mark-compact) and at most 32 MB (half the scavenges and promotions
// under steady load). At Node's defaults p99 latency in the first seconds after an idle spell
// was about twice the reference proxy's (bench/README.md). A heap limit cannot be changed from
// inside a running process, and a launcher that re-executes node would put a second process
// between the service manager and the server (signals, SIGKILL, exit codes), so the flags ride
// on the `#!` line: `env -S` (GNU coreutils ≥ 8.30, macOS, FreeBSD) splits it, and
// `npx gatehouse`, `gatehouse` on PATH and `--workers` processes (cluster.fork inherits
// execArgv) all get them. `node bin/gatehouse.js` bypasses this line; pass the flags there
// yourself (docs/deploy.md, Sizing).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
