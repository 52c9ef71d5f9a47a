#!/usr/bin/env -S node --max-semi-space-size=32
// The package's `bin`: runs the TypeScript sources through tsx so `npx gatehouse` works
// right after `npm ci`, with no build step and no stale output to go out of date.
//
// The `#!` line gives V8 a larger young generation (semi-spaces up to 32 MB, Node's default is
// 16 MB): the proxy allocates per request, and with the default new space, shrunk while idle,
// the first seconds of load scavenge every few milliseconds and p99 latency doubles
// (bench/README.md). A heap limit cannot be changed from inside a running process, and a
// launcher that re-executes node would put a second process between the service manager and
// the server (signals, SIGKILL, exit codes), so the flag rides on the `#!` line: `env -S`
// (GNU coreutils ≥ 8.30, macOS, FreeBSD) splits it, and `npx gatehouse`, `gatehouse` on PATH and
// `--workers` processes (cluster.fork inherits execArgv) all get it. `node bin/gatehouse.js`
// bypasses this line; pass the flag there yourself (docs/deploy.md, Sizing).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
